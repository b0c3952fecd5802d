//! Reading request headers from the proxy on demand: one host call per value
//! a decision needs, instead of copying the whole header map into the VM on
//! every request.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use crate::credential::Credential;
use crate::matching::MatchInputs;

/// The request attributes matches look at; those not asked for stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchAttributes {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
}

/// One request header's first value, as text. Bytes that are not UTF-8
/// (obs-text) become U+FFFD rather than aborting the VM, which the SDK's
/// text reader would do.
pub fn header(name: &str) -> Result<Option<String>, Status> {
    let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)?;
    Ok(value.map(|bytes| {
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }))
}

/// The attributes `inputs` asks for.
pub fn match_attributes(inputs: MatchInputs) -> Result<MatchAttributes, Status> {
    let read = |wanted: bool, name: &str| -> Result<String, Status> {
        if wanted { Ok(header(name)?.unwrap_or_default()) } else { Ok(String::new()) }
    };
    Ok(MatchAttributes {
        method: read(inputs.method, ":method")?,
        path: read(inputs.path, ":path")?,
        authority: read(inputs.authority, ":authority")?,
    })
}

/// The credential header `name` (lower case), telling one value from
/// several.
///
/// Envoy keeps `authorization` as a single header, joining repeated ones
/// with commas (which [`crate::credential::extract_token`] refuses as
/// invalid characters), so its first value is all there is. Any other header
/// may repeat, and only the whole map shows that.
pub fn credential(name: &str) -> Result<Credential, Status> {
    if name == "authorization" {
        return Ok(match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)? {
            Some(value) => Credential::One(value),
            None => Credential::Absent,
        });
    }
    let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders)?;
    let mut values = headers.into_iter().filter(|(header, _)| header == name);
    Ok(match (values.next(), values.next()) {
        (None, _) => Credential::Absent,
        (Some((_, value)), None) => Credential::One(value),
        (Some(_), Some(_)) => Credential::Several,
    })
}

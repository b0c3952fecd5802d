//! A store operation through the [`Host`]: dispatched as an HTTP callout to
//! etcd's Envoy cluster, its answer read back into the typed result.

use std::time::Duration;

use baton_token::TokenHash;

use super::etcd::{EtcdAnswer, EtcdError, EtcdOperation};
use crate::host::{Callout, CalloutResponse, Host, HostError, LogLevel};

/// Largest etcd answer read. Values are sealed tokens (a few KB); a larger
/// answer is no answer of Baton's store.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A store operation a request waits for ([`crate::runtime::Verdict::AwaitStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    /// What the filter names the step by (its [`crate::runtime::Round`]
    /// shows the outcome under this key).
    pub key: TokenHash,
    /// The operation.
    pub operation: EtcdOperation,
}

/// etcd reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdEndpoint {
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority` of the calls.
    pub authority: String,
    /// Call timeout.
    pub timeout_ms: u64,
}

impl EtcdEndpoint {
    /// Dispatches `operation`; its answer arrives in the VM's
    /// `on_http_call_response` with the returned token.
    pub fn dispatch(&self, host: &dyn Host, operation: &EtcdOperation) -> Result<u32, HostError> {
        let body = operation.body();
        host.dispatch(&Callout {
            cluster: &self.cluster,
            method: "POST",
            path: operation.path(),
            authority: &self.authority,
            headers: vec![("content-type", "application/json"), ("accept", "application/json")],
            body: Some(body.as_bytes()),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// Reads the answer being delivered (inside the call-response callback) to
/// `operation`.
pub fn read_answer(
    host: &dyn Host,
    operation: &EtcdOperation,
    num_headers: usize,
    body_size: usize,
) -> Result<EtcdAnswer, EtcdError> {
    interpret(operation, &host.callout_response(num_headers, body_size, MAX_ANSWER_BYTES))
}

/// What a callout's answer says about `operation`.
pub fn interpret(operation: &EtcdOperation, response: &CalloutResponse) -> Result<EtcdAnswer, EtcdError> {
    let Some(status) = response.status else { return Err(EtcdError::NoResponse) };
    if response.body_too_large {
        return Err(EtcdError::TooLarge);
    }
    operation.parse(status, &response.body)
}

/// The kind of a store fault, for audit lines and counters.
pub fn fault_label(error: &EtcdError) -> &'static str {
    match error {
        EtcdError::NoResponse => "store_no_response",
        EtcdError::TooLarge => "store_too_large",
        EtcdError::Refused { .. } => "store_refused",
        EtcdError::Status(_) => "store_status",
        EtcdError::Malformed(_) => "store_malformed",
    }
}

/// Logs a store fault by its kind (and HTTP status) alone: etcd's words may
/// quote what it was sent, and a malformed answer's description may quote
/// the answer.
pub fn log_fault(host: &dyn Host, cluster: &str, step: &str, error: &EtcdError) {
    let status = match error {
        EtcdError::Refused { status, .. } | EtcdError::Status(status) => format!(" status={status}"),
        _ => String::new(),
    };
    host.log(
        LogLevel::Warn,
        &format!("cluster={cluster} store {step} failed: {}{status}", fault_label(error)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::etcd::{LeaseId, StoredValue};
    use crate::test_host::TestHost;

    fn endpoint() -> EtcdEndpoint {
        EtcdEndpoint { cluster: "etcd".into(), authority: "etcd.internal".into(), timeout_ms: 250 }
    }

    #[test]
    fn an_operation_is_a_json_post_to_the_cluster() {
        let host = TestHost::new(0);
        let operation = EtcdOperation::CreateIfAbsent {
            key: b"baton/ab".to_vec(),
            value: b"v".to_vec(),
            lease: LeaseId::new(9).unwrap(),
        };
        let id = endpoint().dispatch(&host, &operation).unwrap();
        let calls = host.calls();
        let [call] = calls.as_slice() else { panic!("{calls:?}") };
        assert_eq!((call.id, call.cluster.as_str(), call.path.as_str()), (id, "etcd", "/v3/kv/txn"));
        assert_eq!(call.timeout, Duration::from_millis(250));
        let header = |name: &str| call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(header(":authority"), Some("etcd.internal"));
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(call.body, operation.body().into_bytes());
        host.refuse_dispatch(true);
        assert_eq!(endpoint().dispatch(&host, &operation), Err(HostError));
    }

    #[test]
    fn the_answer_is_read_from_the_host() {
        let host = TestHost::new(0);
        let get = EtcdOperation::Get { key: b"k".to_vec() };
        let found = r#"{"header":{"revision":"4"},"kvs":[{"key":"aw==","create_revision":"3","mod_revision":"4","value":"dg=="}],"count":"1"}"#;
        host.set_callout_response(CalloutResponse {
            status: Some(200),
            body: found.into(),
            body_too_large: false,
        });
        assert_eq!(
            read_answer(&host, &get, 3, found.len()),
            Ok(EtcdAnswer::Value(Some(StoredValue {
                value: b"v".to_vec(),
                create_revision: 3,
                mod_revision: 4,
                lease: None
            })))
        );
        // Timeout or reset: no status.
        host.set_callout_response(CalloutResponse { status: None, body: vec![], body_too_large: false });
        assert_eq!(read_answer(&host, &get, 0, 0), Err(EtcdError::NoResponse));
        // Over the limit: not read, not "absent".
        let huge = format!(r#"{{"header":{{"revision":"4"}},"pad":"{}"}}"#, "x".repeat(MAX_ANSWER_BYTES));
        host.set_callout_response(CalloutResponse {
            status: Some(200),
            body: huge.into(),
            body_too_large: false,
        });
        assert_eq!(read_answer(&host, &get, 3, MAX_ANSWER_BYTES + 30), Err(EtcdError::TooLarge));
        // Envoy's own 503 for a refused connection.
        let refused = CalloutResponse {
            status: Some(503),
            body: b"upstream connect error".to_vec(),
            body_too_large: false,
        };
        assert_eq!(interpret(&get, &refused), Err(EtcdError::Status(503)));
    }
}

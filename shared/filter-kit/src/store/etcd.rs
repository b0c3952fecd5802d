//! etcd v3's JSON gateway (etcd 3.4, grpc-gateway 1.9): the request bodies
//! of the few operations the shared store needs, and strict readers of the
//! answers.
//!
//! What the gateway really does (checked against etcd 3.4.23):
//! - every call is a `POST` of a JSON object to `/v3/<service>/<method>`;
//! - `bytes` fields (keys, values) are standard base64, padded;
//! - `int64` fields (revisions, lease ids, TTLs, counts) are JSON strings;
//! - field names are the proto names (`create_revision`, `request_put`),
//!   except the lease's `ID` and `TTL`, which the proto spells that way;
//! - fields at their zero value are left out: a missing key's range has no
//!   `kvs` and no `count`, a failed transaction no `succeeded`, an empty
//!   value no `value`, a delete of nothing no `deleted`;
//! - a refusal is a non-200 status (mapped from the gRPC code) with
//!   `{"error": ..., "message": ..., "code": <gRPC code>}`;
//! - a lease asked for with a TTL under etcd's minimum (2 s by default) is
//!   granted with the minimum; a put or transaction naming a lease that does
//!   not exist (or expired) is refused with 404, gRPC code 5.
//!
//! Every answer that is not what the operation must get (another status, not
//! JSON, a field of the wrong type, a missing header, a key that was not
//! asked for) is an [`EtcdError`], never a panic and never "absent".

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Path of a range (read).
pub const RANGE_PATH: &str = "/v3/kv/range";
/// Path of a put.
pub const PUT_PATH: &str = "/v3/kv/put";
/// Path of a transaction.
pub const TXN_PATH: &str = "/v3/kv/txn";
/// Path of a delete.
pub const DELETE_RANGE_PATH: &str = "/v3/kv/deleterange";
/// Path of a lease grant.
pub const LEASE_GRANT_PATH: &str = "/v3/lease/grant";

/// gRPC status code `NOT_FOUND`, which etcd answers for an unknown lease.
const GRPC_NOT_FOUND: i64 = 5;

/// A lease etcd granted: keys written with it are deleted when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(i64);

impl LeaseId {
    /// A lease id read back (e.g. from shared data); `None` for 0, which
    /// means "no lease".
    pub fn new(id: i64) -> Option<Self> {
        (id != 0).then_some(Self(id))
    }

    /// The id as etcd numbers it (never 0: 0 means "no lease").
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A granted lease: its id and the TTL etcd actually gave it (which may be
/// more than asked for, never less).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease.
    pub id: LeaseId,
    /// Seconds until it expires, as granted.
    pub ttl_secs: u64,
}

/// A key's current value, as a range returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The value (empty when etcd left the field out).
    pub value: Vec<u8>,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision that last wrote it.
    pub mod_revision: i64,
    /// Its lease, if any.
    pub lease: Option<LeaseId>,
}

/// One operation on the store, as a filter keeps it while the call is out.
#[derive(Clone, PartialEq, Eq)]
pub enum EtcdOperation {
    /// Reads one key.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Writes `value` under `key` with `lease` only if the key does not
    /// exist; otherwise reads the value already there. The primitive of
    /// single-use marks and fleet-wide single-flight leases.
    CreateIfAbsent {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease it goes with (nothing in the store lives forever).
        lease: LeaseId,
    },
    /// Writes `value` under `key` with `lease`, whatever was there.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease it goes with.
        lease: LeaseId,
    },
    /// Deletes one key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Asks for a lease of `ttl_secs` seconds.
    GrantLease {
        /// Seconds the lease should live.
        ttl_secs: u32,
    },
}

impl fmt::Debug for EtcdOperation {
    // Keys are keyed hashes, values sealed; still, a value is not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
        match self {
            Self::Get { key: k } => write!(f, "Get({})", key(k)),
            Self::CreateIfAbsent { key: k, value, lease } => {
                write!(f, "CreateIfAbsent({}, {} bytes, lease {})", key(k), value.len(), lease.0)
            }
            Self::Put { key: k, value, lease } => {
                write!(f, "Put({}, {} bytes, lease {})", key(k), value.len(), lease.0)
            }
            Self::Delete { key: k } => write!(f, "Delete({})", key(k)),
            Self::GrantLease { ttl_secs } => write!(f, "GrantLease({ttl_secs} s)"),
        }
    }
}

/// What an operation obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdAnswer {
    /// A [`EtcdOperation::Get`]: the value, or `None` when the key does not
    /// exist.
    Value(Option<StoredValue>),
    /// A [`EtcdOperation::CreateIfAbsent`] that wrote its value.
    Created,
    /// A [`EtcdOperation::CreateIfAbsent`] that found the key taken: what is
    /// there.
    AlreadyExists(StoredValue),
    /// A [`EtcdOperation::Put`] done.
    Written,
    /// A [`EtcdOperation::Delete`]: how many keys it deleted (0 or 1).
    Deleted(u64),
    /// A [`EtcdOperation::GrantLease`].
    Lease(Lease),
}

/// Why an operation has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtcdError {
    /// No response: timeout, reset, connection refused.
    NoResponse,
    /// The answer was larger than the limit and not read.
    TooLarge,
    /// etcd refused the operation (a non-200 status with an etcd error
    /// body, or an `error` in a 200 answer).
    Refused {
        /// HTTP status.
        status: u16,
        /// gRPC status code, when given.
        code: Option<i64>,
        /// etcd's message (at most 200 characters of it).
        message: String,
    },
    /// A status other than 200 without an etcd error body (a proxy's page,
    /// a 405, ...).
    Status(u16),
    /// The answer is not what this operation gets: not JSON, a field
    /// missing or of the wrong type, or inconsistent with the request.
    Malformed(String),
}

impl EtcdError {
    /// Whether etcd refused because the lease named does not exist (it
    /// expired or was revoked): grant another and try again.
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, Self::Refused { code: Some(GRPC_NOT_FOUND), message, .. }
            if message.contains("lease not found"))
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResponse => f.write_str("etcd did not answer"),
            Self::TooLarge => f.write_str("etcd's answer is too large"),
            Self::Refused { status, code: Some(code), message } => {
                write!(f, "etcd refused ({status}, code {code}): {message}")
            }
            Self::Refused { status, code: None, message } => write!(f, "etcd refused ({status}): {message}"),
            Self::Status(status) => write!(f, "etcd answered status {status}"),
            Self::Malformed(what) => write!(f, "etcd's answer is malformed: {what}"),
        }
    }
}

impl EtcdOperation {
    /// The gateway path it is sent to.
    pub fn path(&self) -> &'static str {
        match self {
            Self::Get { .. } => RANGE_PATH,
            Self::CreateIfAbsent { .. } => TXN_PATH,
            Self::Put { .. } => PUT_PATH,
            Self::Delete { .. } => DELETE_RANGE_PATH,
            Self::GrantLease { .. } => LEASE_GRANT_PATH,
        }
    }

    /// The JSON body it is sent with.
    pub fn body(&self) -> String {
        let body = match self {
            Self::Get { key } => serde_json::to_string(&RangeRequest { key: Bytes(key) }),
            Self::CreateIfAbsent { key, value, lease } => serde_json::to_string(&TxnRequest {
                compare: [Compare {
                    target: "CREATE",
                    result: "EQUAL",
                    key: Bytes(key),
                    create_revision: Int64Out(0),
                }],
                success: [RequestOp::RequestPut(PutRequest {
                    key: Bytes(key),
                    value: Bytes(value),
                    lease: Int64Out(lease.0),
                })],
                failure: [RequestOp::RequestRange(RangeRequest { key: Bytes(key) })],
            }),
            Self::Put { key, value, lease } => serde_json::to_string(&PutRequest {
                key: Bytes(key),
                value: Bytes(value),
                lease: Int64Out(lease.0),
            }),
            Self::Delete { key } => serde_json::to_string(&RangeRequest { key: Bytes(key) }),
            Self::GrantLease { ttl_secs } => {
                serde_json::to_string(&LeaseGrantRequest { ttl: Int64Out(i64::from(*ttl_secs)) })
            }
        };
        // Serializing these plain structs cannot fail; an empty body would
        // be refused by etcd, not mistaken for an answer.
        body.unwrap_or_default()
    }

    /// Reads etcd's answer (`status`: the HTTP status) to this operation.
    pub fn parse(&self, status: u16, body: &[u8]) -> Result<EtcdAnswer, EtcdError> {
        if status != 200 {
            return Err(match serde_json::from_slice::<ErrorBody>(body) {
                Ok(error) => error.into_refusal(status),
                Err(_) => EtcdError::Status(status),
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|err| malformed(format!("not JSON ({err})")))?;
        if value.get("error").is_some() {
            let error: ErrorBody = serde_json::from_value(value)
                .map_err(|err| malformed(format!("an error body of the wrong shape ({err})")))?;
            return Err(error.into_refusal(status));
        }
        match self {
            Self::Get { key } => {
                let range: RangeResponse = read(value)?;
                Ok(EtcdAnswer::Value(range.single(key)?))
            }
            Self::CreateIfAbsent { key, .. } => {
                let txn: TxnResponse = read(value)?;
                txn.created(key)
            }
            Self::Put { .. } => {
                let _: PutResponse = read(value)?;
                Ok(EtcdAnswer::Written)
            }
            Self::Delete { .. } => {
                let deleted: DeleteRangeResponse = read(value)?;
                match deleted.deleted.map_or(0, |count| count.0) {
                    count @ 0..=1 => Ok(EtcdAnswer::Deleted(count.unsigned_abs())),
                    count => Err(malformed(format!("{count} keys deleted for one key"))),
                }
            }
            Self::GrantLease { .. } => {
                let grant: LeaseGrantResponse = read(value)?;
                if grant.id.0 == 0 {
                    return Err(malformed("lease id 0"));
                }
                let ttl_secs = u64::try_from(grant.ttl.0)
                    .ok()
                    .filter(|ttl| *ttl > 0)
                    .ok_or_else(|| malformed(format!("lease TTL {}", grant.ttl.0)))?;
                Ok(EtcdAnswer::Lease(Lease { id: LeaseId(grant.id.0), ttl_secs }))
            }
        }
    }
}

fn malformed(what: impl Into<String>) -> EtcdError {
    EtcdError::Malformed(what.into())
}

fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, EtcdError> {
    serde_json::from_value(value).map_err(|err| malformed(err.to_string()))
}

// ---------------------------------------------------------------------------
// Requests.

/// A `bytes` field: standard base64.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(self.0))
    }
}

/// An `int64` field, written as the gateway writes them: a string.
struct Int64Out(i64);

impl Serialize for Int64Out {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[derive(Serialize)]
struct RangeRequest<'a> {
    key: Bytes<'a>,
}

#[derive(Serialize)]
struct PutRequest<'a> {
    key: Bytes<'a>,
    value: Bytes<'a>,
    lease: Int64Out,
}

#[derive(Serialize)]
struct Compare<'a> {
    target: &'static str,
    result: &'static str,
    key: Bytes<'a>,
    create_revision: Int64Out,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum RequestOp<'a> {
    RequestPut(PutRequest<'a>),
    RequestRange(RangeRequest<'a>),
}

#[derive(Serialize)]
struct TxnRequest<'a> {
    compare: [Compare<'a>; 1],
    success: [RequestOp<'a>; 1],
    failure: [RequestOp<'a>; 1],
}

#[derive(Serialize)]
struct LeaseGrantRequest {
    #[serde(rename = "TTL")]
    ttl: Int64Out,
}

// ---------------------------------------------------------------------------
// Answers. Unknown fields are allowed (a later etcd may add some); the
// fields an answer must have are required, with their types.

/// An `int64` field as the gateway writes it: a string of digits.
#[derive(Debug, Clone, Copy)]
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<i64>().map(Int64).map_err(|_| {
            de::Error::invalid_value(de::Unexpected::Str(&text), &"an int64 as a decimal string")
        })
    }
}

/// A `bytes` field as the gateway writes it: standard base64.
#[derive(Debug, Clone, Default)]
struct Base64(Vec<u8>);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(Base64)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str("(not base64)"), &"standard base64"))
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: Option<i64>,
}

impl ErrorBody {
    fn into_refusal(self, status: u16) -> EtcdError {
        let message: String = self.error.chars().take(200).collect();
        EtcdError::Refused { status, code: self.code, message }
    }
}

/// Every answer's header; nested answers carry only the revision. Required
/// (a body without one is no etcd answer), not read: hence the
/// `allow(dead_code)` on the fields holding it.
#[derive(Deserialize)]
struct ResponseHeader {
    #[allow(dead_code)]
    revision: Int64,
}

#[derive(Deserialize)]
struct KeyValue {
    key: Base64,
    create_revision: Int64,
    mod_revision: Int64,
    #[serde(default)]
    value: Base64,
    #[serde(default)]
    lease: Option<Int64>,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[allow(dead_code)]
    header: ResponseHeader,
    #[serde(default)]
    kvs: Vec<KeyValue>,
    #[serde(default)]
    count: Option<Int64>,
}

impl RangeResponse {
    /// The one key asked for, or `None`; anything else is malformed.
    fn single(self, key: &[u8]) -> Result<Option<StoredValue>, EtcdError> {
        let count = self.count.map_or(0, |count| count.0);
        let mut kvs = self.kvs.into_iter();
        let (kv, extra) = (kvs.next(), kvs.next());
        if extra.is_some() || count != i64::from(kv.is_some()) {
            return Err(malformed(format!("a range of one key with count {count}")));
        }
        let Some(kv) = kv else { return Ok(None) };
        if kv.key.0 != key {
            return Err(malformed("a range answered with another key"));
        }
        if kv.create_revision.0 <= 0 || kv.mod_revision.0 < kv.create_revision.0 {
            return Err(malformed("a key with impossible revisions"));
        }
        let lease = match kv.lease.map_or(0, |lease| lease.0) {
            0 => None,
            id => Some(LeaseId(id)),
        };
        Ok(Some(StoredValue {
            value: kv.value.0,
            create_revision: kv.create_revision.0,
            mod_revision: kv.mod_revision.0,
            lease,
        }))
    }
}

#[derive(Deserialize)]
struct PutResponse {
    #[allow(dead_code)]
    header: ResponseHeader,
}

#[derive(Deserialize)]
struct DeleteRangeResponse {
    #[allow(dead_code)]
    header: ResponseHeader,
    #[serde(default)]
    deleted: Option<Int64>,
}

#[derive(Deserialize)]
struct LeaseGrantResponse {
    #[allow(dead_code)]
    header: ResponseHeader,
    #[serde(rename = "ID")]
    id: Int64,
    #[serde(rename = "TTL")]
    ttl: Int64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseOp {
    ResponsePut(#[allow(dead_code)] PutResponse),
    ResponseRange(RangeResponse),
}

#[derive(Deserialize)]
struct TxnResponse {
    #[allow(dead_code)]
    header: ResponseHeader,
    /// Left out when false.
    #[serde(default)]
    succeeded: bool,
    responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// The answer of [`EtcdOperation::CreateIfAbsent`]: on success one put,
    /// otherwise one range holding the key (which exists: the comparison
    /// that failed said so).
    fn created(self, key: &[u8]) -> Result<EtcdAnswer, EtcdError> {
        let mut responses = self.responses.into_iter();
        let (first, extra) = (responses.next(), responses.next());
        if extra.is_some() {
            return Err(malformed("a transaction of one operation answered with several"));
        }
        match (self.succeeded, first) {
            (true, Some(ResponseOp::ResponsePut(_))) => Ok(EtcdAnswer::Created),
            (false, Some(ResponseOp::ResponseRange(range))) => match range.single(key)? {
                Some(existing) => Ok(EtcdAnswer::AlreadyExists(existing)),
                None => Err(malformed("create-if-absent failed but the key does not exist")),
            },
            (succeeded, _) => Err(malformed(format!(
                "a transaction that {} answered without its operation's response",
                if succeeded { "succeeded" } else { "failed" }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    // Answers copied from etcd 3.4.23 (`etcd-server` on Debian).
    const HEADER: &str = r#""header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"}"#;

    fn get() -> EtcdOperation {
        EtcdOperation::Get { key: b"foo".to_vec() }
    }

    fn create() -> EtcdOperation {
        EtcdOperation::CreateIfAbsent { key: b"foo".to_vec(), value: b"baz".to_vec(), lease: LeaseId(7) }
    }

    fn json_of(operation: &EtcdOperation) -> Value {
        serde_json::from_str(&operation.body()).unwrap()
    }

    fn ok(operation: &EtcdOperation, body: &str) -> Result<EtcdAnswer, EtcdError> {
        operation.parse(200, body.as_bytes())
    }

    #[test]
    fn request_bodies_follow_the_gateway() {
        assert_eq!(json_of(&get()), json!({"key": "Zm9v"}));
        assert_eq!(
            json_of(&create()),
            json!({
                "compare": [{"target": "CREATE", "result": "EQUAL", "key": "Zm9v", "create_revision": "0"}],
                "success": [{"request_put": {"key": "Zm9v", "value": "YmF6", "lease": "7"}}],
                "failure": [{"request_range": {"key": "Zm9v"}}],
            })
        );
        let put = EtcdOperation::Put { key: b"foo".to_vec(), value: vec![0xff], lease: LeaseId(-3) };
        assert_eq!(json_of(&put), json!({"key": "Zm9v", "value": "/w==", "lease": "-3"}));
        assert_eq!(json_of(&EtcdOperation::Delete { key: b"foo".to_vec() }), json!({"key": "Zm9v"}));
        assert_eq!(json_of(&EtcdOperation::GrantLease { ttl_secs: 30 }), json!({"TTL": "30"}));
        assert_eq!(
            [get().path(), create().path(), put.path(), EtcdOperation::Delete { key: vec![] }.path()],
            ["/v3/kv/range", "/v3/kv/txn", "/v3/kv/put", "/v3/kv/deleterange"]
        );
        assert_eq!(EtcdOperation::GrantLease { ttl_secs: 1 }.path(), "/v3/lease/grant");
    }

    #[test]
    fn a_get_reads_the_value_or_absent() {
        let found = format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"1","value":"YmFy","lease":"99"}}],"count":"1"}}"#
        );
        assert_eq!(
            ok(&get(), &found),
            Ok(EtcdAnswer::Value(Some(StoredValue {
                value: b"bar".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                lease: Some(LeaseId(99)),
            })))
        );
        assert_eq!(ok(&get(), &format!("{{{HEADER}}}")), Ok(EtcdAnswer::Value(None)));
        // etcd leaves an empty value out.
        let empty = format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","create_revision":"5","mod_revision":"5","version":"1"}}],"count":"1"}}"#
        );
        match ok(&get(), &empty) {
            Ok(EtcdAnswer::Value(Some(value))) => assert!(value.value.is_empty() && value.lease.is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_get_refuses_what_is_not_its_answer() {
        let kv = r#"{"key":"Zm9v","create_revision":"2","mod_revision":"2","value":"YmFy"}"#;
        let cases = [
            String::new(),
            "garbage".to_string(),
            "[]".to_string(),
            "{}".to_string(),
            r#"{"header":{}}"#.to_string(),
            r#"{"header":{"revision":2}}"#.to_string(),
            format!(r#"{{{HEADER},"kvs":[{kv}]}}"#),
            format!(r#"{{{HEADER},"count":"1"}}"#),
            format!(r#"{{{HEADER},"kvs":[{kv},{kv}],"count":"2"}}"#),
            format!(r#"{{{HEADER},"kvs":[{}],"count":"1"}}"#, kv.replace("Zm9v", "YmFy")),
            format!(r#"{{{HEADER},"kvs":[{}],"count":"1"}}"#, kv.replace("YmFy", "!!")),
            format!(r#"{{{HEADER},"kvs":[{}],"count":"1"}}"#, kv.replace(r#""2""#, "2")),
            format!(r#"{{{HEADER},"kvs":[{}],"count":"1"}}"#, kv.replace(r#""create_revision":"2","#, "")),
            format!(
                r#"{{{HEADER},"kvs":[{}],"count":"1"}}"#,
                kv.replace(r#""create_revision":"2""#, r#""create_revision":"0""#)
            ),
            format!(r#"{{{HEADER},"kvs":{kv},"count":"1"}}"#),
        ];
        for body in cases {
            assert!(matches!(ok(&get(), &body), Err(EtcdError::Malformed(_))), "{body}");
        }
    }

    #[test]
    fn refusals_and_other_statuses_are_errors() {
        let refusal = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let error = create().parse(404, refusal.as_bytes()).unwrap_err();
        assert_eq!(
            error,
            EtcdError::Refused {
                status: 404,
                code: Some(5),
                message: "etcdserver: requested lease not found".to_string()
            }
        );
        assert!(error.is_lease_not_found());
        assert_eq!(get().parse(405, b"Method Not Allowed\n"), Err(EtcdError::Status(405)));
        assert_eq!(get().parse(503, b""), Err(EtcdError::Status(503)));
        // An error body with a 200 is still an error, whole or not.
        match ok(&get(), r#"{"error":"etcdserver: request timed out","code":14}"#) {
            Err(error @ EtcdError::Refused { status: 200, code: Some(14), .. }) => {
                assert!(!error.is_lease_not_found())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ok(&get(), r#"{"error":5}"#), Err(EtcdError::Malformed(_))));
        let long = format!(r#"{{"error":"{}","code":2}}"#, "x".repeat(5000));
        match get().parse(500, long.as_bytes()) {
            Err(EtcdError::Refused { message, .. }) => assert_eq!(message.len(), 200),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_if_absent_wins_or_reads_the_holder() {
        let won = format!(
            r#"{{{HEADER},"succeeded":true,"responses":[{{"response_put":{{"header":{{"revision":"3"}}}}}}]}}"#
        );
        assert_eq!(ok(&create(), &won), Ok(EtcdAnswer::Created));
        let lost = format!(
            r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"2"}},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy","lease":"7"}}],"count":"1"}}}}]}}"#
        );
        match ok(&create(), &lost) {
            Ok(EtcdAnswer::AlreadyExists(existing)) => assert_eq!(existing.value, b"bar"),
            other => panic!("{other:?}"),
        }
        let bad = [
            // Succeeded, but with the range of the failure branch.
            lost.replace(r#""responses""#, r#""succeeded":true,"responses""#),
            // Failed (no `succeeded`), but with the put.
            won.replace(r#""succeeded":true,"#, ""),
            format!(r#"{{{HEADER},"succeeded":true,"responses":[]}}"#),
            format!(r#"{{{HEADER},"succeeded":true}}"#),
            format!(
                r#"{{{HEADER},"succeeded":"true","responses":[{{"response_put":{{"header":{{"revision":"3"}}}}}}]}}"#
            ),
            // Failed, and the key is not there.
            format!(r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"2"}}}}}}]}}"#),
            format!(
                r#"{{{HEADER},"responses":[{{"response_delete_range":{{"header":{{"revision":"2"}}}}}}]}}"#
            ),
        ];
        for body in bad {
            assert!(matches!(ok(&create(), &body), Err(EtcdError::Malformed(_))), "{body}");
        }
    }

    #[test]
    fn put_delete_and_lease_answers() {
        let put = EtcdOperation::Put { key: b"k".to_vec(), value: b"v".to_vec(), lease: LeaseId(1) };
        assert_eq!(ok(&put, &format!("{{{HEADER}}}")), Ok(EtcdAnswer::Written));
        assert!(matches!(ok(&put, "{}"), Err(EtcdError::Malformed(_))));
        let delete = EtcdOperation::Delete { key: b"k".to_vec() };
        assert_eq!(ok(&delete, &format!(r#"{{{HEADER},"deleted":"1"}}"#)), Ok(EtcdAnswer::Deleted(1)));
        assert_eq!(ok(&delete, &format!("{{{HEADER}}}")), Ok(EtcdAnswer::Deleted(0)));
        assert!(matches!(
            ok(&delete, &format!(r#"{{{HEADER},"deleted":"2"}}"#)),
            Err(EtcdError::Malformed(_))
        ));
        assert!(matches!(ok(&delete, &format!(r#"{{{HEADER},"deleted":1}}"#)), Err(EtcdError::Malformed(_))));
        let grant = EtcdOperation::GrantLease { ttl_secs: 1 };
        assert_eq!(
            ok(&grant, &format!(r#"{{{HEADER},"ID":"2324035820874619654","TTL":"2"}}"#)),
            Ok(EtcdAnswer::Lease(Lease { id: LeaseId(2324035820874619654), ttl_secs: 2 }))
        );
        for body in [
            format!(r#"{{{HEADER},"TTL":"2"}}"#),
            format!(r#"{{{HEADER},"ID":"0","TTL":"2"}}"#),
            format!(r#"{{{HEADER},"ID":"5","TTL":"-1"}}"#),
            format!(r#"{{{HEADER},"ID":5,"TTL":"2"}}"#),
            format!(r#"{{{HEADER},"ID":"5x","TTL":"2"}}"#),
            format!(r#"{{{HEADER},"ID":"99999999999999999999","TTL":"2"}}"#),
            r#"{"ID":"5","TTL":"2"}"#.to_string(),
        ] {
            assert!(matches!(ok(&grant, &body), Err(EtcdError::Malformed(_))), "{body}");
        }
        // LeaseGrantResponse has an `error` field of its own.
        assert!(matches!(
            ok(&grant, &format!(r#"{{{HEADER},"ID":"5","TTL":"2","error":"no"}}"#)),
            Err(EtcdError::Refused { status: 200, code: None, .. })
        ));
    }

    #[test]
    fn debug_prints_no_value() {
        let text = format!(
            "{:?}",
            EtcdOperation::Put { key: b"k".to_vec(), value: b"secret".to_vec(), lease: LeaseId(1) }
        );
        assert!(!text.contains("secret"), "{text}");
    }
}

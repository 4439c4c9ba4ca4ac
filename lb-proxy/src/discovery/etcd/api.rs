//! The three calls of etcd's v3 gRPC API the etcd source makes, `KV.Range`, `Watch.Watch` and
//! `Auth.Authenticate`, over tonic (plain HTTP/2, or TLS through [`super::access::TlsConnect`]).
//! Once authenticated, every call carries the token as the `token` metadata, as etcd's own
//! client sends it.
//!
//! The messages are written here with `prost`'s derive instead of generated from etcd's `.proto`
//! files: generating them needs `protoc` at build time, which a fresh machine lacks, and these
//! few messages are all the source reads. Each field's number and type are those of
//! `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto` (etcd v3.4 and later: progress
//! requests and cancel reasons are 3.4's); a field left out is skipped by the decoder, as
//! protobuf requires. The tests in `tests/it/discovery_etcd.rs` run these calls against a real
//! etcd.

use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use super::access::{Access, Credentials, TlsConnect};

/// The largest answer taken from etcd (a range read of a big prefix); tonic's default is 4 MiB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// 0 for a deleted key's tombstone in a watch event.
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeRequest` (the fields a prefix read sets).
#[derive(Clone, PartialEq, prost::Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `etcdserverpb.WatchRequest`: its `request_union`.
#[derive(Clone, PartialEq, prost::Message)]
struct WatchRequest {
    #[prost(oneof = "WatchRequestUnion", tags = "1, 3")]
    request_union: Option<WatchRequestUnion>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum WatchRequestUnion {
    #[prost(message, tag = "1")]
    CreateRequest(WatchCreateRequest),
    #[prost(message, tag = "3")]
    ProgressRequest(WatchProgressRequest),
}

/// `etcdserverpb.WatchCreateRequest` (the fields a prefix watch sets).
#[derive(Clone, PartialEq, prost::Message)]
struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    start_revision: i64,
    #[prost(bool, tag = "4")]
    progress_notify: bool,
}

/// `etcdserverpb.WatchProgressRequest`: empty.
#[derive(Clone, PartialEq, prost::Message)]
struct WatchProgressRequest {}

/// `etcdserverpb.WatchResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// `mvccpb.Event`. Its type is read from the key-value's version, not from the enum.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Event {
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// `etcdserverpb.AuthenticateRequest`. Its `Debug` hides the password.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    password: String,
}

impl std::fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthenticateRequest {{ name: {:?}, .. }}", self.name)
    }
}

/// `etcdserverpb.AuthenticateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct AuthenticateResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    token: String,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("TLS settings: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The end of the range holding every key that starts with `prefix` (etcd's `WithPrefix`):
/// the prefix with its last byte below 0xff incremented and the rest cut; `\0` (every key) when
/// the prefix is empty or all 0xff.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(at) => {
            let mut end = prefix[..=at].to_vec();
            end[at] += 1;
            end
        }
        None => vec![0],
    }
}

/// A connection to one etcd endpoint.
pub(super) struct Client {
    grpc: tonic::client::Grpc<Channel>,
    /// The token every call carries, once authenticated.
    token: Option<AsciiMetadataValue>,
}

impl Client {
    /// Connects to `endpoint` (`host:port`), over TLS when `access` says so, with HTTP/2
    /// keepalive pings every `keepalive` answered within `timeout`, and `timeout` on connecting
    /// and on each unary call.
    pub(super) async fn connect(
        endpoint: &str,
        access: &Access,
        timeout: Duration,
        keepalive: Duration,
    ) -> Result<Self, ConnectError> {
        let scheme = match access.tls {
            Some(_) => "https",
            None => "http",
        };
        let settings = Endpoint::from_shared(format!("{scheme}://{endpoint}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(keepalive)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
        let channel = match &access.tls {
            Some(config) => {
                let name = super::access::server_name(access.sni.as_deref(), endpoint)?;
                let connect = TlsConnect {
                    config: config.clone(),
                    name,
                };
                settings.connect_with_connector(connect).await?
            }
            None => settings.connect().await?,
        };
        let grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { grpc, token: None })
    }

    /// Asks etcd for a token for `credentials`; the calls that follow carry it.
    pub(super) async fn authenticate(
        &mut self,
        credentials: &Credentials,
    ) -> Result<String, tonic::Status> {
        let request = AuthenticateRequest {
            name: credentials.username.clone(),
            password: credentials.password.expose().to_owned(),
        };
        self.ready().await?;
        let path = PathAndQuery::from_static("/etcdserverpb.Auth/Authenticate");
        let answer: tonic::Response<AuthenticateResponse> = self
            .grpc
            .unary(tonic::Request::new(request), path, ProstCodec::default())
            .await?;
        let token = answer.into_inner().token;
        self.use_token(&token)?;
        Ok(token)
    }

    /// Sends `token` (from an earlier [`Client::authenticate`]) with the calls that follow.
    pub(super) fn use_token(&mut self, token: &str) -> Result<(), tonic::Status> {
        let value = AsciiMetadataValue::try_from(token)
            .map_err(|_| tonic::Status::internal("etcd: a token that is not ASCII text"))?;
        self.token = Some(value);
        Ok(())
    }

    /// `message` as a request, with the token when there is one.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    pub(super) async fn range_prefix(
        &mut self,
        prefix: &[u8],
    ) -> Result<RangeResponse, tonic::Status> {
        let request = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
        };
        self.ready().await?;
        let path = PathAndQuery::from_static("/etcdserverpb.KV/Range");
        let answer = self
            .grpc
            .unary(self.request(request), path, ProstCodec::default())
            .await?;
        Ok(answer.into_inner())
    }

    /// Watches every key under `prefix` from revision `start`, with progress notifications.
    pub(super) async fn watch_prefix(
        &mut self,
        prefix: &[u8],
        start: i64,
    ) -> Result<Watch, tonic::Status> {
        // A watch stream carries a create request, then progress requests; two in flight
        // at most.
        let (requests, outgoing) = mpsc::channel(2);
        let create = WatchRequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            start_revision: start,
            progress_notify: true,
        });
        requests
            .try_send(WatchRequest {
                request_union: Some(create),
            })
            .expect("a new channel has room");
        self.ready().await?;
        let path = PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
        let answers = self
            .grpc
            .streaming(
                self.request(ReceiverStream::new(outgoing)),
                path,
                ProstCodec::default(),
            )
            .await?
            .into_inner();
        Ok(Watch { requests, answers })
    }

    async fn ready(&mut self) -> Result<(), tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| tonic::Status::unavailable(format!("etcd: {error}")))
    }
}

/// An open watch: its answers, and the way to ask it for a progress report.
pub(super) struct Watch {
    requests: mpsc::Sender<WatchRequest>,
    answers: tonic::Streaming<WatchResponse>,
}

impl Watch {
    /// The next answer; `None` when etcd closed the stream.
    pub(super) async fn message(&mut self) -> Result<Option<WatchResponse>, tonic::Status> {
        self.answers.message().await
    }

    /// Asks etcd for a progress report (its current revision, even with nothing changed).
    /// A request still waiting to be sent is enough: it is not queued twice.
    pub(super) fn request_progress(&self) {
        let progress = WatchRequestUnion::ProgressRequest(WatchProgressRequest {});
        let _ = self.requests.try_send(WatchRequest {
            request_union: Some(progress),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn prefix_end_is_etcds() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"/lb/pool/", b"/lb/pool0"),
            (b"a", b"b"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix), end, "{prefix:?}");
        }
    }

    #[test]
    fn a_watch_response_decodes_with_fields_it_does_not_name() {
        // cluster_id (1) and member_id (2) in the header, watch_id (2) and created (3) in the
        // response, create_revision (2) and lease (6) in a key-value: all skipped.
        let mut header = Vec::new();
        prost::encoding::uint64::encode(1, &7, &mut header);
        prost::encoding::uint64::encode(2, &9, &mut header);
        prost::encoding::int64::encode(3, &42, &mut header);
        let mut kv = Vec::new();
        prost::encoding::bytes::encode(1, &b"/p/a".to_vec(), &mut kv);
        prost::encoding::int64::encode(2, &40, &mut kv);
        prost::encoding::int64::encode(3, &41, &mut kv);
        prost::encoding::int64::encode(4, &2, &mut kv);
        prost::encoding::bytes::encode(5, &b"{}".to_vec(), &mut kv);
        prost::encoding::int64::encode(6, &5, &mut kv);
        let mut event = Vec::new();
        prost::encoding::int32::encode(1, &0, &mut event);
        prost::encoding::bytes::encode(2, &kv, &mut event);
        let mut wire = Vec::new();
        prost::encoding::bytes::encode(1, &header, &mut wire);
        prost::encoding::int64::encode(2, &3, &mut wire);
        prost::encoding::bool::encode(3, &true, &mut wire);
        prost::encoding::bytes::encode(11, &event, &mut wire);
        let decoded = WatchResponse::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded.header.map(|h| h.revision), Some(42));
        assert!(!decoded.canceled);
        let kv = decoded.events[0].kv.clone().expect("kv");
        assert_eq!(
            (
                kv.key.as_slice(),
                kv.mod_revision,
                kv.version,
                kv.value.as_slice()
            ),
            (&b"/p/a"[..], 41, 2, &b"{}"[..])
        );
    }

    #[test]
    fn an_authenticate_request_encodes_as_etcd_reads_it() {
        let request = AuthenticateRequest {
            name: "lb".to_owned(),
            password: "pw".to_owned(),
        };
        // name (1) and password (2), both length-delimited strings.
        let expected = [0x0a, 2, b'l', b'b', 0x12, 2, b'p', b'w'];
        assert_eq!(request.encode_to_vec(), expected);
        let shown = format!("{request:?}");
        assert!(shown.contains("lb") && !shown.contains("pw"), "{shown}");
    }

    #[test]
    fn an_authenticate_response_gives_its_token() {
        // header (1) with cluster_id (1), member_id (2), revision (3) and raft_term (4), then
        // token (2).
        let mut header = Vec::new();
        prost::encoding::uint64::encode(1, &7, &mut header);
        prost::encoding::uint64::encode(2, &9, &mut header);
        prost::encoding::int64::encode(3, &12, &mut header);
        prost::encoding::uint64::encode(4, &2, &mut header);
        let mut wire = Vec::new();
        prost::encoding::bytes::encode(1, &header, &mut wire);
        prost::encoding::string::encode(2, &"XyZ.42".to_owned(), &mut wire);
        let decoded = AuthenticateResponse::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded.token, "XyZ.42");
        assert_eq!(decoded.header.map(|h| h.revision), Some(12));
        // The exact bytes: field 2, length 6.
        assert_eq!(
            &wire[wire.len() - 8..],
            &[0x12, 6, b'X', b'y', b'Z', b'.', b'4', b'2']
        );
    }

    #[test]
    fn a_create_request_encodes_as_etcd_reads_it() {
        let request = WatchRequest {
            request_union: Some(WatchRequestUnion::CreateRequest(WatchCreateRequest {
                key: b"/p/".to_vec(),
                range_end: b"/p0".to_vec(),
                start_revision: 7,
                progress_notify: true,
            })),
        };
        // Field 1 (create_request), length-delimited, holding key (1), range_end (2),
        // start_revision (3) and progress_notify (4).
        let inner = [
            0x0a, 3, b'/', b'p', b'/', 0x12, 3, b'/', b'p', b'0', 0x18, 7, 0x20, 1,
        ];
        let mut expected = vec![0x0a, inner.len() as u8];
        expected.extend_from_slice(&inner);
        assert_eq!(request.encode_to_vec(), expected);
    }
}

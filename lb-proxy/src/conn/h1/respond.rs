//! Writing a reply to an HTTP/1 client: the head by the codec's writer, framed by the codec's
//! decision ([`crate::proto::h1::framing::client_framing`]), and the body streamed behind it.
//!
//! While the backend's body has nothing ready, the client's side is served: the request body is
//! fed on when the upload still runs, a client that goes away ends the response at once (its
//! backend slot is freed), and a backend whose body stalls is cut when no byte has moved on the
//! client connection for `server.idle_timeout`.

use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::{Method, Version};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;

use super::feed::ClientSide;
use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::proto::h1::chunked::{CHUNK_END, LAST_CHUNK, push_chunk_size};
use crate::proto::h1::framing::{Framing, client_framing};
use crate::proto::h1::write::{ClientHead, ConnectionField, write_response_head};
use crate::proxy::reply::Reply;

/// Body data up to this size is copied behind the head (one write); larger data is written
/// from its own buffer.
const COPY_BODY_BYTES: usize = 16 * 1024;

/// Writes `reply` to a client that sent `method` in `version`. `Ok(true)`: the connection may
/// carry the next request; `Ok(false)`: it closes now (`last`, the reply's own `close`, or a
/// close-delimited body); `Err`: the client or the body failed mid-response.
pub(super) async fn write<S: ClientStream>(
    io: &mut TimedIo<S>,
    out: &mut Vec<u8>,
    reply: Reply,
    method: &Method,
    version: Version,
    last: bool,
    client: &mut ClientSide<'_>,
) -> io::Result<bool> {
    let (framing, last) = head(out, &reply, method, version, last);
    let mut body = reply.body;
    let mut left = match framing {
        Framing::Length(length) => length,
        _ => u64::MAX,
    };
    let body_failed = || io::Error::other("the response body failed");
    while left > 0 && !body.is_end_stream() {
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        let frame = match polled.await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more is ready: what is gathered goes out while the body waits, and
                // the client is watched meanwhile.
                flush(io, out).await?;
                std::future::poll_fn(|cx| {
                    loop {
                        if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                            return Poll::Ready(Ok(frame));
                        }
                        match client.poll(io, cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                })
                .await?
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                flush(io, out).await?;
                return Err(body_failed());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are not forwarded; empty data says nothing.
                _ => continue,
            },
        };
        match framing {
            Framing::Length(_) => {
                if data.len() as u64 > left {
                    flush(io, out).await?;
                    return Err(body_failed());
                }
                left -= data.len() as u64;
                push_data(io, out, data).await?;
            }
            Framing::Chunked => {
                push_chunk_size(out, data.len());
                push_data(io, out, data).await?;
                out.extend_from_slice(CHUNK_END);
            }
            Framing::UntilClose => push_data(io, out, data).await?,
        }
    }
    match framing {
        Framing::Length(_) if left > 0 => {
            // The backend's body ended before its declared length: the client must not take
            // what follows for a next response.
            flush(io, out).await?;
            return Err(body_failed());
        }
        Framing::Chunked => out.extend_from_slice(LAST_CHUNK),
        _ => {}
    }
    flush(io, out).await?;
    drop(body);
    Ok(!last)
}

/// Writes the head of `reply` into `out`; returns how its body is framed and whether the
/// connection closes after it. Not generic: one copy serves every stream type, as before TLS
/// (the head writer is inlined into it).
fn head(
    out: &mut Vec<u8>,
    reply: &Reply,
    method: &Method,
    version: Version,
    last: bool,
) -> (Framing, bool) {
    let head_request = *method == Method::HEAD;
    // `None`: the body is already over; `Some(None)`: its size is not known.
    let body_size = (!reply.body.is_end_stream()).then(|| reply.body.size_hint().exact());
    let framing = client_framing(
        head_request,
        reply.status,
        version,
        body_size,
        reply.declared_length(),
    );
    let last = last || reply.close || framing.close;
    let connection = match (version, last) {
        // Only a backend's answer to an upgrade request has this status (the codec refuses
        // any other `101`).
        _ if reply.status == http::StatusCode::SWITCHING_PROTOCOLS => ConnectionField::Upgrade,
        (Version::HTTP_10, false) => ConnectionField::KeepAlive,
        (Version::HTTP_10, true) => ConnectionField::None,
        (_, true) => ConnectionField::Close,
        (_, false) => ConnectionField::None,
    };
    // Without a request id, the fields as they were before ids: no check per field.
    match reply.request_id {
        None => write_response_head(
            out,
            ClientHead {
                version,
                status: reply.status,
                reason: reply.reason(),
                fields: reply.listed(),
                fields_size: reply.fields_size(),
                framing: framing.field,
                connection,
            },
        ),
        Some(_) => write_response_head(
            out,
            ClientHead {
                version,
                status: reply.status,
                reason: reply.reason(),
                fields: reply.fields(),
                fields_size: reply.fields_size(),
                framing: framing.field,
                connection,
            },
        ),
    }
    (framing.body, last)
}

async fn push_data<S: ClientStream>(
    io: &mut TimedIo<S>,
    out: &mut Vec<u8>,
    data: Bytes,
) -> io::Result<()> {
    if data.len() <= COPY_BODY_BYTES {
        out.extend_from_slice(&data);
        if out.len() >= COPY_BODY_BYTES {
            flush(io, out).await?;
        }
        return Ok(());
    }
    flush(io, out).await?;
    io.before_write(data.len());
    io.write_all(&data).await?;
    if S::BUFFERS_WRITES {
        io.flush().await?;
    }
    Ok(())
}

async fn flush<S: ClientStream>(io: &mut TimedIo<S>, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.before_write(out.len());
        io.write_all(out).await?;
        out.clear();
        if S::BUFFERS_WRITES {
            io.flush().await?;
        }
    }
    Ok(())
}

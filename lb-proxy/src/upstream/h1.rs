//! HTTP/1.1 on one upstream connection, over the codec ([`crate::proto::h1`]): the request
//! head is serialised once by the request path; here it is written, the response head read and
//! parsed (interim responses skipped), and the body handed out as a [`ResponseBody`] that reads
//! the connection as it is polled. A body that streams is written as it arrives while the
//! response head is read ([`super::upload`]).
//!
//! A connection whose response was not read to its exact end, that the backend asked to close,
//! on which bytes arrived beyond the response, or whose upload did not finish, is never reused.

use std::io;
use std::task::{Context, Poll};

use tokio::io::AsyncWriteExt;

use super::body::ResponseBody;
use super::connection::{Connection, ExchangeError};
use super::upload::{Upload, UploadBody};
use crate::proto::h1::framing::Framing;
use crate::proto::h1::response::{self, ResponseHead};

impl Connection {
    /// Polls for the final response head (interim 1xx responses are skipped; a `101` is final
    /// when `upgrade` says the request asked for one): ready with the head once one is
    /// complete. `answered` tracks whether any response byte arrived.
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        expect_body: bool,
        max_head_bytes: usize,
        upgrade: bool,
        answered: &mut bool,
    ) -> Poll<Result<ResponseHead, ExchangeError>> {
        loop {
            let parsed =
                response::parse_answer(&self.buffer, expect_body, max_head_bytes, upgrade)?;
            if let Some(parsed) = parsed {
                let status = parsed.status();
                let interim =
                    status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS;
                let bytes = self.buffer.split_to(parsed.length).freeze();
                *answered = true;
                if interim {
                    continue;
                }
                return Poll::Ready(Ok(parsed.into_head(bytes)));
            }
            let nothing_yet = self.buffer.is_empty() && !*answered;
            match std::task::ready!(self.poll_fill(cx)) {
                Ok(0) if nothing_yet => {
                    return Poll::Ready(Err(ExchangeError::ClosedWithoutAnswer));
                }
                Ok(0) => return Poll::Ready(Err(ExchangeError::ClosedBeforeHead)),
                Ok(_) => {}
                Err(error) if nothing_yet && error.kind() == io::ErrorKind::ConnectionReset => {
                    return Poll::Ready(Err(ExchangeError::ClosedWithoutAnswer));
                }
                Err(error) => return Poll::Ready(Err(ExchangeError::Read(error))),
            }
        }
    }

    /// Reads the response head and frames its body. `expect_body` is false for a HEAD
    /// request; a head longer than `max_head_bytes` is an error; `upgrade`: the request asked
    /// for an upgrade, and a `101` answers it (its connection then leaves with
    /// [`ResponseBody::take_upgraded`]).
    pub async fn read_response(
        mut self,
        expect_body: bool,
        max_head_bytes: usize,
        upgrade: bool,
    ) -> Result<(ResponseHead, ResponseBody), ExchangeError> {
        let mut answered = false;
        let head = std::future::poll_fn(|cx| {
            self.poll_head(cx, expect_body, max_head_bytes, upgrade, &mut answered)
        })
        .await?;
        let body = ResponseBody::new(self, head.body, head.reusable);
        Ok((head, body))
    }

    /// Sends `head` and then `body` framed by `framing` (a length or chunked), reading the
    /// response head meanwhile; returns once the head is read, with the rest of the upload, if
    /// any, left to the response body to drive.
    pub async fn exchange_streaming(
        mut self,
        head: &[u8],
        body: UploadBody,
        framing: Framing,
        expect_body: bool,
        max_head_bytes: usize,
    ) -> Result<(ResponseHead, ResponseBody), ExchangeError> {
        self.stream
            .write_all(head)
            .await
            .map_err(ExchangeError::Write)?;
        if self.stream.buffers_writes() {
            self.stream.flush().await.map_err(ExchangeError::Write)?;
        }
        let mut upload = Upload::new(body, framing);
        // Until the body is written in full, or writing fails: a backend that answers early and
        // closes makes the write fail, and its answer is still read.
        let mut sending = true;
        let mut sent = false;
        let mut answered = false;
        let head = std::future::poll_fn(|cx| {
            if let Poll::Ready(head) =
                self.poll_head(cx, expect_body, max_head_bytes, false, &mut answered)
            {
                return Poll::Ready(head);
            }
            if sending {
                match upload.poll_send(&mut self.stream, cx) {
                    Poll::Ready(result) => {
                        sending = false;
                        match result {
                            Ok(()) => sent = true,
                            Err(ExchangeError::Write(_)) => {}
                            Err(error) => return Poll::Ready(Err(error)),
                        }
                        // The head may have arrived while the last bytes were written.
                        return self.poll_head(
                            cx,
                            expect_body,
                            max_head_bytes,
                            false,
                            &mut answered,
                        );
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await?;
        let mut body = ResponseBody::new(self, head.body, head.reusable && (sent || sending));
        if sending {
            body.continue_upload(Box::new(upload));
        }
        Ok((head, body))
    }
}

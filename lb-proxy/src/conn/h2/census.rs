//! What `lb_http2_client_connections` and `lb_http2_client_streams` see of one connection.
//!
//! The connection counts itself once, at its start and its end. Its streams are published as a
//! difference: the driver tells the count it holds whenever it is about to wait, and the gauge
//! moves only by what changed since the last time, so a connection that starts and ends many
//! streams between two waits moves the shared gauge once, not twice per stream.

use prometheus_client::metrics::gauge::Gauge;

/// One HTTP/2 client connection, and its streams, in the gauges.
#[derive(Debug)]
pub(crate) struct Census {
    connections: Gauge,
    streams: Gauge,
    /// The streams this connection has added to `streams`.
    published: i64,
}

impl Census {
    /// Counts a connection opened now.
    pub(crate) fn open(connections: &Gauge, streams: &Gauge) -> Self {
        connections.inc();
        Self {
            connections: connections.clone(),
            streams: streams.clone(),
            published: 0,
        }
    }

    /// The connection holds `open` streams now.
    pub(crate) fn streams(&mut self, open: usize) {
        let open = i64::try_from(open).unwrap_or(i64::MAX);
        if open != self.published {
            self.streams.inc_by(open - self.published);
            self.published = open;
        }
    }
}

impl Drop for Census {
    fn drop(&mut self) {
        self.streams.dec_by(self.published);
        self.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_streams_are_counted_until_the_connection_ends() {
        let (connections, streams) = (Gauge::default(), Gauge::default());
        let mut first = Census::open(&connections, &streams);
        let mut second = Census::open(&connections, &streams);
        assert_eq!(connections.get(), 2);
        for (first_holds, second_holds, total) in [(3, 0, 3), (3, 5, 8), (1, 5, 6), (0, 2, 2)] {
            first.streams(first_holds);
            second.streams(second_holds);
            assert_eq!(streams.get(), total);
        }
        first.streams(4);
        drop(first);
        assert_eq!((connections.get(), streams.get()), (1, 2));
        drop(second);
        assert_eq!((connections.get(), streams.get()), (0, 0));
    }
}

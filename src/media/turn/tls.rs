//! TLS for `turns:`: a rustls client session over the TCP byte stream the engine carries.
//! Ciphertext read from the socket goes in, decrypted STUN/ChannelData goes to the stream
//! framer, and plaintext from the TURN protocol comes out as records in the output queue.
//!
//! This is done here over `turn-client-proto`'s TCP client rather than with
//! `turn-client-rustls` 0.1.2, which hits `unreachable!()` when the server sends ChannelData for
//! a channel the client does not know, unwraps `ClientConnection::new`, and passes on at most
//! 2048 decrypted bytes per input (a larger record's rest waits for the next input).

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::framing::StreamFramer;
use super::outq::OutQueue;
use super::TurnError;

/// Plaintext is read out of rustls in pieces of this size.
const READ_CHUNK: usize = 4096;
/// Bounds the loops below; rustls drains in far fewer rounds.
const MAX_ROUNDS: usize = 1024;

#[derive(Debug)]
pub(super) struct TlsLink {
    conn: ClientConnection,
}

/// Whether the server ended the TLS session (close_notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    Open,
    PeerClosed,
}

impl TlsLink {
    pub(super) fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TurnError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TurnError::ServerName(server_name.to_owned()))?;
        Ok(TlsLink {
            conn: ClientConnection::new(config, name)?,
        })
    }

    /// Feeds ciphertext; the plaintext it completes is appended to `framer`.
    pub(super) fn read(
        &mut self,
        mut ciphertext: &[u8],
        framer: &mut StreamFramer,
    ) -> Result<ReadOutcome, String> {
        let mut outcome = ReadOutcome::Open;
        for _ in 0..MAX_ROUNDS {
            if ciphertext.is_empty() {
                break;
            }
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("TLS read: {e}")),
            }
            self.conn
                .process_new_packets()
                .map_err(|e| format!("TLS: {e}"))?;
            if self.drain_plaintext(framer)? == ReadOutcome::PeerClosed {
                outcome = ReadOutcome::PeerClosed;
            }
        }
        Ok(outcome)
    }

    fn drain_plaintext(&mut self, framer: &mut StreamFramer) -> Result<ReadOutcome, String> {
        for _ in 0..MAX_ROUNDS {
            let room = framer.spare(READ_CHUNK);
            match self.conn.reader().read(room) {
                Ok(0) => {
                    framer.commit(READ_CHUNK, 0);
                    return Ok(ReadOutcome::PeerClosed);
                }
                Ok(n) => framer.commit(READ_CHUNK, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    framer.commit(READ_CHUNK, 0);
                    return Ok(ReadOutcome::Open);
                }
                Err(e) => {
                    framer.commit(READ_CHUNK, 0);
                    return Err(format!("TLS: {e}"));
                }
            }
        }
        Ok(ReadOutcome::Open)
    }

    /// Plaintext to send; it is encrypted by [`Self::flush`] (and held by rustls until the
    /// handshake is done).
    pub(super) fn write(&mut self, plaintext: &[u8]) -> Result<(), String> {
        self.conn
            .writer()
            .write_all(plaintext)
            .map_err(|e| format!("TLS write: {e}"))
    }

    /// Moves every pending TLS record into the output stream.
    pub(super) fn flush(&mut self, out: &mut OutQueue) {
        let Some(stream) = out.stream_mut() else {
            return;
        };
        for _ in 0..MAX_ROUNDS {
            if !self.conn.wants_write() {
                break;
            }
            match self.conn.write_tls(stream) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    pub(super) fn close(&mut self, out: &mut OutQueue) {
        self.conn.send_close_notify();
        self.flush(out);
    }
}

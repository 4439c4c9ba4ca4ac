//! The session-ticket key file a fleet shares, so that a client resumes its TLS session on any
//! instance behind the same name: one or more keys of [`TICKET_KEY_BYTES`] bytes each, written
//! back to back (`openssl rand 48 > tickets.key`). The first key encrypts new tickets; every key
//! decrypts, so a fleet rotates by putting a new key first and keeping the old one behind it
//! until the tickets it sealed have expired.

/// Bytes of one key: a 16-byte name (which key sealed a ticket) and a 32-byte AEAD key.
pub const TICKET_KEY_BYTES: usize = 48;
/// Most keys a file may hold.
pub const MAX_TICKET_KEYS: usize = 16;

/// Why a ticket key file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketKeyError {
    /// The file is empty.
    #[error("the ticket key file is empty (make one with `openssl rand 48`)")]
    Empty,
    /// Its size is not a multiple of a key's.
    #[error(
        "the ticket key file holds {0} bytes, not a multiple of 48 (one key is `openssl rand 48`)"
    )]
    Size(usize),
    /// It holds too many keys.
    #[error("the ticket key file holds {0} keys; at most 16 are kept")]
    TooMany(usize),
    /// Two keys share a name: a ticket could not say which one sealed it.
    #[error("keys {0} and {1} of the ticket key file have the same 16-byte name")]
    DuplicateName(usize, usize),
}

/// The keys of a ticket key file, the encrypting one first.
///
/// # Errors
///
/// When the file is empty, not a whole number of keys, too long, or names a key twice.
pub fn parse_ticket_keys(bytes: &[u8]) -> Result<Vec<[u8; TICKET_KEY_BYTES]>, TicketKeyError> {
    if bytes.is_empty() {
        return Err(TicketKeyError::Empty);
    }
    if !bytes.len().is_multiple_of(TICKET_KEY_BYTES) {
        return Err(TicketKeyError::Size(bytes.len()));
    }
    let count = bytes.len() / TICKET_KEY_BYTES;
    if count > MAX_TICKET_KEYS {
        return Err(TicketKeyError::TooMany(count));
    }
    let keys: Vec<[u8; TICKET_KEY_BYTES]> = bytes
        .chunks_exact(TICKET_KEY_BYTES)
        .map(|chunk| {
            let mut key = [0u8; TICKET_KEY_BYTES];
            key.copy_from_slice(chunk);
            key
        })
        .collect();
    for (i, a) in keys.iter().enumerate() {
        if let Some(j) = keys[i + 1..].iter().position(|b| a[..16] == b[..16]) {
            return Err(TicketKeyError::DuplicateName(i, i + 1 + j));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_whole_keys() {
        let two: Vec<u8> = (0..96u8).collect();
        assert_eq!(parse_ticket_keys(&two).unwrap().len(), 2);
        assert_eq!(parse_ticket_keys(&[]), Err(TicketKeyError::Empty));
        assert_eq!(parse_ticket_keys(&[0; 47]), Err(TicketKeyError::Size(47)));
        assert_eq!(
            parse_ticket_keys(&[0; 48 * 17]),
            Err(TicketKeyError::TooMany(17))
        );
        assert_eq!(
            parse_ticket_keys(&[7; 96]),
            Err(TicketKeyError::DuplicateName(0, 1))
        );
    }
}

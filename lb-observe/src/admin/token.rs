//! Where a client finds the admin token: a file named on the command line, else an environment
//! variable. Never a command-line argument itself, which any user of the machine can read in
//! the process list.
//!
//! The file is read as the daemon reads `admin.token_file`: surrounding whitespace (a trailing
//! newline from `echo`) is ignored. Reads are bounded, so a wrong path such as `/dev/zero` is
//! an error, not a hang.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The environment variable holding the token when no file is named.
pub const TOKEN_ENV: &str = "LB_ADMIN_TOKEN";

/// Largest token file read: a token is tens of bytes; a file larger than this is not one.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Why no token could be had.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The file could not be opened or read.
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds only whitespace.
    #[error("the token file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than a token could be.
    #[error("the token file {} is larger than {MAX_TOKEN_FILE_BYTES} bytes: is it the token?", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The token (from `from`: the file or the variable) has characters a header cannot carry.
    /// The message never quotes the token.
    #[error("the token in {from} is not a token: it must be printable ASCII without spaces")]
    NotAToken {
        /// `the file PATH` or `$LB_ADMIN_TOKEN`.
        from: String,
    },
}

/// Printable ASCII without spaces: what an `Authorization: Bearer` value can carry whole.
/// Wider than RFC 6750's `b64token` on purpose: the daemon compares the file's bytes, so a token
/// such as `s3cret!` that it accepts must not be refused here.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

/// The token in `path`, surrounding whitespace removed.
///
/// # Errors
/// The file cannot be read, is empty, larger than 4 KiB, or not a token.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let read = |source| TokenError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenError::TooLarge {
            path: path.to_owned(),
        });
    }
    let not_a_token = || TokenError::NotAToken {
        from: format!("the file {}", path.display()),
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| not_a_token())?
        .trim();
    if text.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    if !is_token(text) {
        return Err(not_a_token());
    }
    Ok(text.to_owned())
}

/// The token to send: from `file` when one is named, else from `env` (the value of
/// [`TOKEN_ENV`], passed in so that callers and tests decide where it comes from; empty counts
/// as unset), else none.
///
/// # Errors
/// As [`read_token_file`]; or the variable's value is not a token.
pub fn token(file: Option<&Path>, env: Option<OsString>) -> Result<Option<String>, TokenError> {
    if let Some(path) = file {
        return read_token_file(path).map(Some);
    }
    let Some(value) = env.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let not_a_token = || TokenError::NotAToken {
        from: format!("${TOKEN_ENV}"),
    };
    let text = value.into_string().map_err(|_| not_a_token())?;
    let text = text.trim();
    if is_token(text) {
        Ok(Some(text.to_owned()))
    } else {
        Err(not_a_token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file under the temp directory, unique to this test process and `name`.
    fn file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("lb-observe-token-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    #[test]
    fn tokens() {
        for good in ["abc", "s3cret!", "a-b.c_d~e+f/g==", "x"] {
            assert!(is_token(good), "{good}");
        }
        for bad in ["", "a b", "a\r\nx: y", "é", "tab\t"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn files() {
        let good = file("good", b"  s3cret\n");
        assert_eq!(read_token_file(&good).unwrap(), "s3cret");
        let empty = file("empty", b" \n");
        assert!(matches!(
            read_token_file(&empty),
            Err(TokenError::Empty { .. })
        ));
        let big = file("big", &[b'a'; 5000]);
        assert!(matches!(
            read_token_file(&big),
            Err(TokenError::TooLarge { .. })
        ));
        let spaced = file("spaced", b"two words\n");
        let error = read_token_file(&spaced).unwrap_err();
        assert!(matches!(error, TokenError::NotAToken { .. }));
        assert!(!error.to_string().contains("words"), "{error}");
        let missing = std::env::temp_dir().join("lb-observe-token-no-such-file");
        let error = read_token_file(&missing).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot read the token file "),
            "{error}"
        );
        for path in [good, empty, big, spaced] {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let path = file("wins", b"from-file\n");
        assert_eq!(
            token(Some(&path), Some("from-env".into())).unwrap(),
            Some("from-file".into())
        );
        assert_eq!(
            token(None, Some("from-env\n".into())).unwrap(),
            Some("from-env".into())
        );
        assert_eq!(token(None, Some("".into())).unwrap(), None);
        assert_eq!(token(None, None).unwrap(), None);
        let error = token(None, Some("a b".into())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the token in $LB_ADMIN_TOKEN is not a token: it must be printable ASCII without spaces"
        );
        let _ = std::fs::remove_file(path);
    }
}

//! Envelope encryption of secret values, and redaction for display.
//!
//! # Envelope format
//!
//! A sealed value is a single token that can be found inside any text with a regular expression:
//!
//! ```text
//! fsec1.<base64url without padding of: version | nonce_k | wrapped_dek | nonce_v | ciphertext>
//! ```
//!
//! | part          | bytes | meaning                                                              |
//! |---------------|-------|----------------------------------------------------------------------|
//! | `version`     | 1     | always `1`                                                           |
//! | `nonce_k`     | 12    | random AES-GCM nonce used to wrap the data key                       |
//! | `wrapped_dek` | 48    | the random 32-byte data key encrypted under the master key (+16 tag) |
//! | `nonce_v`     | 12    | random AES-GCM nonce used to encrypt the value                       |
//! | `ciphertext`  | n+16  | the UTF-8 plaintext encrypted under the data key (+16 tag)           |
//!
//! Both encryptions use AES-256-GCM with the associated data `fsec1`, so a part moved from one
//! envelope version to another does not authenticate.
//!
//! ## Host-bound envelopes (version 2)
//!
//! [`Secrets::seal_bound`] makes an envelope that may only be sent to a set of origins
//! (`https://wdc.xurrent.com`, `http://127.0.0.1:4780`): same `fsec1.` prefix (so redaction and
//! the finders below are unchanged), version byte `2`, and the binding right after it:
//!
//! ```text
//! 2 | binding length (2 bytes, big endian) | binding (origins, UTF-8, space separated) | nonce_k | wrapped_dek | nonce_v | ciphertext
//! ```
//!
//! Both encryptions of a version 2 envelope take `fsec1` followed by the version byte, the
//! length and the binding as associated data, so the binding cannot be changed, removed (turned
//! into a version 1 envelope) or moved to another envelope without the envelope failing to open.
//! A bound envelope opens only through the host-aware calls ([`Secrets::open_for`],
//! [`Secrets::reveal_in_for`], [`Secrets::reveal_value_for`]) given a destination URL whose
//! origin (scheme, host, port) is in the binding; every other call ([`Secrets::open`],
//! [`Secrets::reveal_in`], [`Secrets::reveal_value`]) refuses it with
//! [`SecretsError::HostBound`], naming the binding and the destination. Version 1 envelopes
//! open everywhere, as before. Every call to [`Secrets::seal`] makes a fresh
//! data key and fresh nonces, so sealing the same plaintext twice gives different envelopes.
//!
//! The base64url alphabet has no `.`, `"`, space or `:`, so an envelope embedded in a header
//! (`Bearer fsec1.…`), a JSON string or `user:fsec1.…` ends at the next such character. Text
//! glued directly after an envelope is handled by [`Secrets::reveal_in`] (see there); for
//! redaction it is simply redacted along with the envelope.
//!
//! # Master key
//!
//! [`Secrets::load_or_create`] takes the key from `FERRY_MASTER_KEY` (64 hex characters or
//! base64 of 32 bytes) or from `<data_dir>/master.key`, which it creates (mode 0600 on Unix) with
//! 32 random bytes written as hex on first use.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use rand::RngCore;
use regex::Regex;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// Prefix of every envelope (including the separating dot).
pub const ENVELOPE_PREFIX: &str = "fsec1.";
/// How many base64url characters glued to the end of an envelope [`Secrets::reveal_in`] tolerates.
pub const MAX_GLUED_SUFFIX: usize = 32;
/// Text that replaces an envelope in redacted output.
pub const REDACTED: &str = "[secret]";
/// Name of the environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "FERRY_MASTER_KEY";
/// File name of the master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

const VERSION: u8 = 1;
const VERSION_BOUND: u8 = 2;
const AAD: &[u8] = b"fsec1";
/// Longest binding (the space-separated origins) a bound envelope carries.
pub const MAX_BINDING_LEN: usize = 2048;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const WRAPPED_DEK_LEN: usize = KEY_LEN + TAG_LEN;
/// Offset of the value nonce inside the decoded payload.
const VALUE_NONCE_AT: usize = 1 + NONCE_LEN + WRAPPED_DEK_LEN;
/// Smallest payload: an envelope of the empty string.
const MIN_PAYLOAD: usize = VALUE_NONCE_AT + NONCE_LEN + TAG_LEN;
/// Base64url (no padding) length of [`MIN_PAYLOAD`] bytes: ceil(89 * 4 / 3) = 119.
const MIN_ENCODED: usize = (MIN_PAYLOAD * 4).div_ceil(3);

static ENVELOPE_RE: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern (exercised by every test), so this cannot fail at run time.
    Regex::new(&format!(r"fsec1\.[A-Za-z0-9_-]{{{MIN_ENCODED},}}"))
        .expect("constant envelope regex is valid")
});

/// Errors of the secrets module. None of them ever contains a plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The text is not an envelope (wrong prefix, bad base64, too short, unknown version).
    #[error("not an encrypted secret: {0}")]
    Malformed(&'static str),
    /// Authentication failed: the envelope was tampered with or sealed under another master key.
    #[error("decryption failed: the secret was modified or sealed with a different master key")]
    Decryption,
    /// The decrypted value is not UTF-8 text.
    #[error("decryption failed: the secret is not valid UTF-8")]
    NotUtf8,
    /// Encryption failed (only possible for absurdly large values).
    #[error("encryption failed")]
    Encryption,
    /// A host-bound secret was to be revealed for another destination, or by a path that does
    /// not know where the value goes.
    #[error("this secret may only be sent to {allowed}, not {destination}")]
    HostBound {
        /// The binding, e.g. `https://wdc.xurrent.com, https://graphql.xurrent.com`.
        allowed: String,
        /// The destination's origin, or a description of the path that refused it.
        destination: String,
    },
    /// [`Secrets::seal_bound`] got an origin it cannot bind to.
    #[error("cannot bind a secret to {origin}: {reason}")]
    BadBinding {
        /// The origin or URL given.
        origin: String,
        /// Why (not https, not a URL, …).
        reason: String,
    },
    /// The master key given in `FERRY_MASTER_KEY` or the key file has the wrong form.
    #[error("malformed master key in {source_name}: {reason}")]
    MalformedKey {
        /// Where the key came from (`FERRY_MASTER_KEY` or the key file path).
        source_name: String,
        /// What is wrong with it (never the key itself).
        reason: String,
    },
    /// Reading or creating the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Holds the master key and seals/opens envelopes. The key is zeroized on drop and never shown by
/// `Debug`.
#[derive(Clone)]
pub struct Secrets {
    master: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { master_key: [redacted] }")
    }
}

impl Secrets {
    /// Use the given 32-byte master key.
    pub fn from_master_key(key: &[u8; 32]) -> Secrets {
        Secrets {
            master: Zeroizing::new(*key),
        }
    }

    /// Take the master key from `FERRY_MASTER_KEY` (64 hex characters or base64 of 32 bytes) if it
    /// is set and not empty, else from `<data_dir>/master.key`, which is created with mode 0600 and
    /// 32 random bytes on first use (the directory is created too). A malformed key is an error
    /// naming its source, never a silently generated new key.
    pub fn load_or_create(data_dir: &Path) -> Result<Secrets, SecretsError> {
        let env = std::env::var(MASTER_KEY_ENV).ok().map(Zeroizing::new);
        load_or_create_with(data_dir, env.as_deref().map(|s| s.as_str()))
    }

    /// A fingerprint of the master key (16 hex characters of a SHA-256 over a fixed label and
    /// the key): it tells two keys apart without revealing either — nodes sharing a database
    /// compare it to make sure they share the key.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"ferry master key fingerprint v1\0");
        h.update(self.master.as_slice());
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Encrypt `plaintext` into a new envelope (see the module documentation).
    ///
    /// Encryption can only fail for values larger than AES-GCM's limit (64 GiB); in that case the
    /// error is logged and an empty string is returned, so the plaintext never leaks. Use
    /// [`Secrets::try_seal`] to get the error instead.
    pub fn seal(&self, plaintext: &str) -> String {
        match self.try_seal(plaintext) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, len = plaintext.len(), "sealing a secret failed");
                String::new()
            }
        }
    }

    /// Like [`Secrets::seal`], returning the (practically impossible) encryption error.
    pub fn try_seal(&self, plaintext: &str) -> Result<String, SecretsError> {
        self.seal_with_header(plaintext, &[VERSION])
    }

    /// Encrypt `plaintext` into a version 2 envelope that may only be sent to `origins` (see
    /// the module documentation). Each entry is a URL or an origin (`https://wdc.xurrent.com`,
    /// `http://127.0.0.1:4780/accounts/x`); only its origin (scheme, host, port) is kept.
    /// Allowed: `https`, or `http` on a loopback host (the emulator). An empty list, another
    /// scheme or a binding longer than [`MAX_BINDING_LEN`] is an error.
    pub fn seal_bound<S: AsRef<str>>(
        &self,
        plaintext: &str,
        origins: &[S],
    ) -> Result<String, SecretsError> {
        let binding = binding_of(origins)?;
        let joined = binding.join(" ");
        if joined.len() > MAX_BINDING_LEN {
            return Err(SecretsError::BadBinding {
                origin: joined,
                reason: format!("the binding is longer than {MAX_BINDING_LEN} bytes"),
            });
        }
        let mut header = Vec::with_capacity(3 + joined.len());
        header.push(VERSION_BOUND);
        header.extend_from_slice(&(joined.len() as u16).to_be_bytes());
        header.extend_from_slice(joined.as_bytes());
        self.seal_with_header(plaintext, &header)
    }

    /// Seal with the given header (version byte, and for version 2 the binding), which is also
    /// part of the associated data (version 2 only; version 1 keeps `fsec1`).
    fn seal_with_header(&self, plaintext: &str, header: &[u8]) -> Result<String, SecretsError> {
        let mut rng = rand::rngs::OsRng;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(dek.as_mut_slice());
        let mut nonce_k = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce_k);
        let mut nonce_v = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce_v);
        let aad = aad_of(header);

        let wrapped = cipher(self.master.as_slice(), SecretsError::Encryption)?
            .encrypt(
                &nonce_k.into(),
                Payload {
                    msg: dek.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Encryption)?;
        let ct = cipher(dek.as_slice(), SecretsError::Encryption)?
            .encrypt(
                &nonce_v.into(),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Encryption)?;

        let mut payload = Vec::with_capacity(MIN_PAYLOAD + header.len() + plaintext.len());
        payload.extend_from_slice(header);
        payload.extend_from_slice(&nonce_k);
        payload.extend_from_slice(&wrapped);
        payload.extend_from_slice(&nonce_v);
        payload.extend_from_slice(&ct);
        let mut out = String::with_capacity(ENVELOPE_PREFIX.len() + payload.len() * 4 / 3 + 4);
        out.push_str(ENVELOPE_PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        Ok(out)
    }

    /// Decrypt an envelope. Any modification, a foreign master key or a malformed token gives an
    /// error (never a panic). A host-bound envelope is refused ([`SecretsError::HostBound`]):
    /// open it with [`Secrets::open_for`].
    pub fn open(&self, envelope: &str) -> Result<Zeroizing<String>, SecretsError> {
        self.open_checked(envelope, None)
    }

    /// Decrypt an envelope that is about to be sent to `destination`: a host-bound envelope
    /// opens only when the destination's origin is in its binding; an unbound one always.
    pub fn open_for(
        &self,
        envelope: &str,
        destination: &url::Url,
    ) -> Result<Zeroizing<String>, SecretsError> {
        self.open_checked(envelope, Some(destination))
    }

    fn open_checked(
        &self,
        envelope: &str,
        destination: Option<&url::Url>,
    ) -> Result<Zeroizing<String>, SecretsError> {
        let encoded = envelope
            .strip_prefix(ENVELOPE_PREFIX)
            .ok_or(SecretsError::Malformed("missing fsec1. prefix"))?;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretsError::Malformed("invalid base64url"))?;
        let header_len = header_len(&payload)?;
        if payload.len() < MIN_PAYLOAD - 1 + header_len {
            return Err(SecretsError::Malformed("too short"));
        }
        let header = &payload[..header_len];
        if header[0] == VERSION_BOUND {
            check_binding(&header[3..], destination)?;
        }
        let aad = aad_of(header);
        let body = &payload[header_len..];
        let nonce_k = nonce_at(body, 0)?;
        let wrapped = &body[NONCE_LEN..NONCE_LEN + WRAPPED_DEK_LEN];
        let nonce_v = nonce_at(body, NONCE_LEN + WRAPPED_DEK_LEN)?;
        let ct = &body[2 * NONCE_LEN + WRAPPED_DEK_LEN..];

        let kek = cipher(self.master.as_slice(), SecretsError::Decryption)?;
        let dek = Zeroizing::new(
            kek.decrypt(
                &nonce_k.into(),
                Payload {
                    msg: wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Decryption)?,
        );
        let plain = cipher(dek.as_slice(), SecretsError::Decryption)?
            .decrypt(&nonce_v.into(), Payload { msg: ct, aad: &aad })
            .map_err(|_| SecretsError::Decryption)?;
        match String::from_utf8(plain) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                let mut bytes = e.into_bytes();
                bytes.zeroize();
                Err(SecretsError::NotUtf8)
            }
        }
    }

    /// Replace every envelope embedded anywhere in `text` by its plaintext, e.g.
    /// `"Bearer fsec1.…"` → `"Bearer s3cr3t"`. Fails if any envelope does not open.
    ///
    /// An envelope directly followed by base64url characters (`fsec1.…abc`) is found too: when the
    /// whole token does not open, up to [`MAX_GLUED_SUFFIX`] trailing characters are given back
    /// to the surrounding text until it does (GCM authentication rules out a wrong split).
    ///
    /// A host-bound envelope is refused ([`SecretsError::HostBound`]); see
    /// [`Secrets::reveal_in_for`].
    pub fn reveal_in(&self, text: &str) -> Result<Zeroizing<String>, SecretsError> {
        self.reveal_in_checked(text, None)
    }

    /// [`Secrets::reveal_in`] for text about to be sent to `destination`: host-bound envelopes
    /// open only when the destination's origin is in their binding.
    pub fn reveal_in_for(
        &self,
        text: &str,
        destination: &url::Url,
    ) -> Result<Zeroizing<String>, SecretsError> {
        self.reveal_in_checked(text, Some(destination))
    }

    fn reveal_in_checked(
        &self,
        text: &str,
        destination: Option<&url::Url>,
    ) -> Result<Zeroizing<String>, SecretsError> {
        let mut out = Zeroizing::new(String::with_capacity(text.len()));
        let mut last = 0;
        for m in ENVELOPE_RE.find_iter(text) {
            out.push_str(&text[last..m.start()]);
            let (plain, used) = self.open_prefix(m.as_str(), destination)?;
            out.push_str(&plain);
            out.push_str(&m.as_str()[used..]);
            last = m.end();
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    /// Open `token`, or its longest prefix that opens when characters were glued to its end.
    /// Returns the plaintext and the length of the prefix used.
    fn open_prefix(
        &self,
        token: &str,
        destination: Option<&url::Url>,
    ) -> Result<(Zeroizing<String>, usize), SecretsError> {
        let first_err = match self.open_checked(token, destination) {
            Ok(p) => return Ok((p, token.len())),
            Err(e @ SecretsError::HostBound { .. }) => return Err(e),
            Err(e) => e,
        };
        let min = ENVELOPE_PREFIX.len() + MIN_ENCODED;
        let shortest = token.len().saturating_sub(MAX_GLUED_SUFFIX).max(min);
        for end in (shortest..token.len()).rev() {
            // The token is ASCII (prefix + base64url), so every index is a char boundary.
            match self.open_checked(&token[..end], destination) {
                Ok(p) => return Ok((p, end)),
                Err(e @ SecretsError::HostBound { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        Err(first_err)
    }

    /// Recursively reveal every string (not object keys) in a JSON value. Host-bound envelopes
    /// are refused; see [`Secrets::reveal_value_for`].
    pub fn reveal_value(&self, v: &Value) -> Result<Value, SecretsError> {
        self.reveal_value_checked(v, None)
    }

    /// [`Secrets::reveal_value`] for a value about to be sent to `destination`.
    pub fn reveal_value_for(
        &self,
        v: &Value,
        destination: &url::Url,
    ) -> Result<Value, SecretsError> {
        self.reveal_value_checked(v, Some(destination))
    }

    fn reveal_value_checked(
        &self,
        v: &Value,
        destination: Option<&url::Url>,
    ) -> Result<Value, SecretsError> {
        Ok(match v {
            Value::String(s) if ENVELOPE_RE.is_match(s) => {
                let revealed = self.reveal_in_checked(s, destination)?;
                Value::String(revealed.as_str().to_owned())
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.reveal_value_checked(i, destination))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, val) in map {
                    out.insert(k.clone(), self.reveal_value_checked(val, destination)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// The associated data of an envelope with this header: `fsec1` for version 1, `fsec1` +
/// header for version 2.
fn aad_of(header: &[u8]) -> Vec<u8> {
    if header == [VERSION] {
        AAD.to_vec()
    } else {
        let mut aad = Vec::with_capacity(AAD.len() + header.len());
        aad.extend_from_slice(AAD);
        aad.extend_from_slice(header);
        aad
    }
}

/// Length of the header (version byte, and for version 2 the binding length and binding).
fn header_len(payload: &[u8]) -> Result<usize, SecretsError> {
    match payload.first() {
        Some(&VERSION) => Ok(1),
        Some(&VERSION_BOUND) => {
            let len = payload
                .get(1..3)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or(SecretsError::Malformed("too short"))?;
            if payload.len() < 3 + len {
                return Err(SecretsError::Malformed("too short"));
            }
            Ok(3 + len)
        }
        Some(_) => Err(SecretsError::Malformed("unknown envelope version")),
        None => Err(SecretsError::Malformed("too short")),
    }
}

/// The origins of a binding (the entries given to [`Secrets::seal_bound`]), checked, sorted,
/// without duplicates.
fn binding_of<S: AsRef<str>>(origins: &[S]) -> Result<Vec<String>, SecretsError> {
    let mut out = Vec::with_capacity(origins.len());
    for o in origins {
        let given = o.as_ref().trim();
        let bad = |reason: &str| SecretsError::BadBinding {
            origin: given.to_string(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(given).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let Some(host) = url.host() else {
            return Err(bad("no host"));
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => return Err(bad("http is only allowed on a loopback host; use https")),
            other => return Err(bad(&format!("scheme {other} (https expected)"))),
        }
        out.push(url.origin().ascii_serialization());
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(SecretsError::BadBinding {
            origin: String::new(),
            reason: "no origin given".into(),
        });
    }
    Ok(out)
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Check a version 2 binding against the destination: its origin must be one of the binding's.
fn check_binding(binding: &[u8], destination: Option<&url::Url>) -> Result<(), SecretsError> {
    let binding = std::str::from_utf8(binding)
        .map_err(|_| SecretsError::Malformed("binding is not UTF-8"))?;
    let allowed = || binding.split(' ').collect::<Vec<_>>().join(", ");
    let Some(dest) = destination else {
        return Err(SecretsError::HostBound {
            allowed: allowed(),
            destination:
                "a destination this step does not check (only requests to a known URL may carry it)"
                    .into(),
        });
    };
    let origin = dest.origin().ascii_serialization();
    if binding.split(' ').any(|b| b == origin) {
        Ok(())
    } else {
        Err(SecretsError::HostBound {
            allowed: allowed(),
            destination: origin,
        })
    }
}

/// The origins a host-bound envelope may be sent to (`None` for an unbound or malformed one).
/// Read without decrypting, so not authenticated: for messages only.
pub fn binding(envelope: &str) -> Option<Vec<String>> {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(envelope.strip_prefix(ENVELOPE_PREFIX)?)
        .ok()?;
    let len = header_len(&payload).ok()?;
    if payload[0] != VERSION_BOUND {
        return None;
    }
    let text = std::str::from_utf8(&payload[3..len]).ok()?;
    Some(text.split(' ').map(str::to_string).collect())
}

/// An AES-256-GCM instance for a 32-byte key (no stack copy of the key; the key schedule is
/// zeroized on drop). Any other length is an error.
fn cipher(key: &[u8], err: SecretsError) -> Result<Aes256Gcm, SecretsError> {
    Aes256Gcm::new_from_slice(key).map_err(|_| err)
}

fn nonce_at(payload: &[u8], at: usize) -> Result<[u8; NONCE_LEN], SecretsError> {
    payload
        .get(at..at + NONCE_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(SecretsError::Malformed("too short"))
}

/// Parse a master key given as 64 hex characters or as base64 (standard or URL-safe, with or
/// without padding) of exactly 32 bytes. Surrounding whitespace is ignored. The error message
/// describes the problem without repeating the key.
pub fn parse_master_key(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("the key is empty".into());
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode_to_slice(t, key.as_mut_slice()).map_err(|_| "invalid hex".to_string())?;
        return Ok(key);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(t) {
            let bytes = Zeroizing::new(bytes);
            if bytes.len() == KEY_LEN {
                key.copy_from_slice(&bytes);
                return Ok(key);
            }
            return Err(format!(
                "expected 64 hex characters or base64 of 32 bytes, got base64 of {} bytes",
                bytes.len()
            ));
        }
    }
    Err(format!(
        "expected 64 hex characters or base64 of 32 bytes, got {} characters that are neither",
        t.chars().count()
    ))
}

/// [`Secrets::load_or_create`] with the environment value passed in (testable without touching
/// the process environment).
pub fn load_or_create_with(
    data_dir: &Path,
    env_key: Option<&str>,
) -> Result<Secrets, SecretsError> {
    if let Some(text) = env_key.filter(|t| !t.trim().is_empty()) {
        let key = parse_master_key(text).map_err(|reason| SecretsError::MalformedKey {
            source_name: MASTER_KEY_ENV.to_string(),
            reason,
        })?;
        tracing::debug!("master key taken from {MASTER_KEY_ENV}");
        return Ok(Secrets::from_master_key(&key));
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    if let Some(secrets) = read_key_file(&path)? {
        return Ok(secrets);
    }
    if !data_dir.as_os_str().is_empty() {
        std::fs::create_dir_all(data_dir).map_err(|source| SecretsError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
    }
    if let Some(secrets) = create_key_file(data_dir, &path)? {
        return Ok(secrets);
    }
    // Another process created the key file first: use theirs.
    read_key_file(&path)?.ok_or_else(|| SecretsError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "key file vanished"),
    })
}

/// Read and parse the key file; `Ok(None)` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<Secrets>, SecretsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_permissive(path);
            let key = parse_master_key(&text).map_err(|reason| SecretsError::MalformedKey {
                source_name: path.display().to_string(),
                reason,
            })?;
            Ok(Some(Secrets::from_master_key(&key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write a new random key to a private temporary file (mode 0600), sync it, then hard-link it to
/// `path`, so the key file appears atomically and complete even if the process dies half-way.
/// `Ok(None)` when `path` already exists (another process won the race).
fn create_key_file(data_dir: &Path, path: &Path) -> Result<Option<Secrets>, SecretsError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(key.as_mut_slice());
    let mut text = Zeroizing::new(hex::encode(key.as_slice()));
    text.push('\n');
    let tmp = data_dir.join(format!(
        ".{MASTER_KEY_FILE}.{}.{:016x}",
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    let io_err = |p: &Path, source: std::io::Error| SecretsError::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(data_dir);
            tracing::info!(path = %path.display(), "created a new master key file");
            Ok(Some(Secrets::from_master_key(&key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Make the new directory entry durable (best effort; not possible on every platform).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    {
        let d = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(unix)]
fn warn_if_permissive(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "master key file is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_permissive(_path: &Path) {}

/// True when `s` is exactly one envelope (prefix, base64url payload of plausible length and the
/// known version). It does not check that the envelope opens.
pub fn is_envelope(s: &str) -> bool {
    let Some(encoded) = s.strip_prefix(ENVELOPE_PREFIX) else {
        return false;
    };
    if encoded.len() < MIN_ENCODED
        || !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return false;
    }
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) {
        Ok(p) => header_len(&p).is_ok_and(|h| p.len() >= MIN_PAYLOAD - 1 + h),
        Err(_) => false,
    }
}

/// True when `s` contains an envelope anywhere.
pub fn contains_envelope(s: &str) -> bool {
    ENVELOPE_RE.is_match(s)
}

/// Replace every envelope in `s` by `[secret]` for display (logs, API, CLI output).
pub fn redact_str(s: &str) -> String {
    ENVELOPE_RE.replace_all(s, REDACTED).into_owned()
}

/// Replace every envelope inside every string of a JSON value (object keys included) by `[secret]`.
pub fn redact_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, val)| (redact_str(k), redact_value(val)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> Secrets {
        Secrets::from_master_key(&[7u8; 32])
    }

    #[test]
    fn round_trip_and_fresh_envelopes() {
        let s = secrets();
        let a = s.seal("123");
        let b = s.seal("123");
        assert_ne!(a, b, "two seals of one value must differ");
        assert!(a.starts_with(ENVELOPE_PREFIX));
        assert!(is_envelope(&a));
        assert_eq!(s.open(&a).unwrap().as_str(), "123");
        assert_eq!(s.open(&b).unwrap().as_str(), "123");
        let empty = s.seal("");
        assert!(is_envelope(&empty));
        assert_eq!(empty.len(), ENVELOPE_PREFIX.len() + MIN_ENCODED);
        assert_eq!(s.open(&empty).unwrap().as_str(), "");
        let unicode = s.seal("pässwörd ✓");
        assert_eq!(s.open(&unicode).unwrap().as_str(), "pässwörd ✓");
    }

    #[test]
    fn tampering_is_detected_without_panic() {
        let s = secrets();
        let env = s.seal("s3cr3t");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&env[ENVELOPE_PREFIX.len()..])
            .unwrap();
        // Flip one bit in every byte position: every variant must fail to open.
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x01;
            let t = format!(
                "{ENVELOPE_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p)
            );
            assert!(s.open(&t).is_err(), "byte {i} flipped still opened");
        }
        // Truncated tag.
        let short = format!(
            "{ENVELOPE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&payload[..payload.len() - 8])
        );
        assert!(s.open(&short).is_err());
        assert!(matches!(
            s.open("fsec1.!!!"),
            Err(SecretsError::Malformed(_))
        ));
        assert!(matches!(s.open("plain"), Err(SecretsError::Malformed(_))));
        assert!(matches!(
            s.open("fsec1.AAAA"),
            Err(SecretsError::Malformed(_))
        ));
        // Another master key cannot open it.
        let other = Secrets::from_master_key(&[8u8; 32]);
        let err = other.open(&env).unwrap_err();
        assert!(matches!(err, SecretsError::Decryption));
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..400 {
            let body: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % 64) as usize] as char
                })
                .collect();
            let t = format!("{ENVELOPE_PREFIX}{body}");
            assert!(s.open(&t).is_err(), "len {len}");
            let _ = is_envelope(&t);
            let _ = redact_str(&t);
        }
        // A well-formed payload with another version byte is not an envelope.
        let mut p = vec![3u8];
        p.extend_from_slice(&[0u8; MIN_PAYLOAD]);
        let t = format!(
            "{ENVELOPE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p)
        );
        assert!(!is_envelope(&t));
        assert!(matches!(s.open(&t), Err(SecretsError::Malformed(_))));
    }

    #[test]
    fn debug_never_shows_key() {
        let s = Secrets::from_master_key(&[0xAB; 32]);
        let d = format!("{s:?}");
        assert!(!d.to_lowercase().contains("abab"), "{d}");
        assert!(!d.contains("171"), "{d}");
    }

    #[test]
    fn reveal_in_text_and_json() {
        let s = secrets();
        let tok = s.seal("s3cr3t");
        let pw = s.seal("pw");
        let text = format!("Bearer {tok}");
        assert_eq!(s.reveal_in(&text).unwrap().as_str(), "Bearer s3cr3t");
        let two = format!("{pw}:{tok}.");
        assert_eq!(s.reveal_in(&two).unwrap().as_str(), "pw:s3cr3t.");
        assert_eq!(
            s.reveal_in("nothing here").unwrap().as_str(),
            "nothing here"
        );
        let bad = format!("Bearer {}", &tok[..tok.len() - 2]);
        assert!(s.reveal_in(&bad).is_err());
        // Text glued directly to an envelope is given back.
        let glued = format!("/{tok}abc_-9/{pw}Z");
        assert_eq!(s.reveal_in(&glued).unwrap().as_str(), "/s3cr3tabc_-9/pwZ");
        let too_much = format!("{tok}{}", "a".repeat(MAX_GLUED_SUFFIX + 1));
        assert!(s.reveal_in(&too_much).is_err());

        let v = json!({"a": tok, "b": [1, {"c": format!("x {pw} y")}], "d": null});
        assert_eq!(
            s.reveal_value(&v).unwrap(),
            json!({"a": "s3cr3t", "b": [1, {"c": "x pw y"}], "d": null})
        );
    }

    #[test]
    fn redaction() {
        let s = secrets();
        let tok = s.seal("s3cr3t");
        assert_eq!(redact_str(&format!("Bearer {tok}")), "Bearer [secret]");
        assert_eq!(redact_str("fsec1.short"), "fsec1.short");
        let v = json!({"h": format!("Bearer {tok}"), "l": [tok.clone(), 3]});
        let r = redact_value(&v);
        assert_eq!(r, json!({"h": "Bearer [secret]", "l": ["[secret]", 3]}));
        assert!(!r.to_string().contains("fsec1."));
        assert!(contains_envelope(&tok));
        assert!(!is_envelope(&format!("x{tok}")));
        assert!(!is_envelope("fsec1."));
    }

    #[test]
    fn master_key_parsing() {
        let hexkey = "00".repeat(31) + "ff";
        let k = parse_master_key(&format!("  {hexkey}\n")).unwrap();
        assert_eq!(k[31], 0xff);
        let b64 = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        assert_eq!(*parse_master_key(&b64).unwrap(), [5u8; 32]);
        let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(*parse_master_key(&b64u).unwrap(), [0xfb; 32]);
        let short = base64::engine::general_purpose::STANDARD.encode([5u8; 16]);
        assert!(parse_master_key(&short).unwrap_err().contains("16 bytes"));
        let e = parse_master_key("not a key!").unwrap_err();
        assert!(!e.contains("not a key"));
        assert!(parse_master_key("").is_err());
    }

    #[test]
    fn key_file_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = load_or_create_with(&data, None).unwrap();
        let path = data.join(MASTER_KEY_FILE);
        assert!(path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let env = a.seal("kept");
        let b = load_or_create_with(&data, None).unwrap();
        assert_eq!(b.open(&env).unwrap().as_str(), "kept");
        // An empty env value counts as unset.
        let c = load_or_create_with(&data, Some("  ")).unwrap();
        assert_eq!(c.open(&env).unwrap().as_str(), "kept");
    }

    #[test]
    fn concurrent_first_start_agrees_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || load_or_create_with(&data, None).unwrap())
            })
            .collect();
        let all: Vec<Secrets> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let env = all[0].seal("same");
        for s in &all {
            assert_eq!(s.open(&env).unwrap().as_str(), "same");
        }
        // Only the key file remains: no temporary files.
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [MASTER_KEY_FILE]);
        let text = std::fs::read_to_string(data.join(MASTER_KEY_FILE)).unwrap();
        assert_eq!(text.trim().len(), 64);
    }

    #[test]
    fn env_key_wins_and_malformed_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let hexkey = "11".repeat(32);
        let s = load_or_create_with(dir.path(), Some(&hexkey)).unwrap();
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
        let same = Secrets::from_master_key(&[0x11; 32]);
        assert_eq!(same.open(&s.seal("x")).unwrap().as_str(), "x");
        let err = load_or_create_with(dir.path(), Some("zz")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(MASTER_KEY_ENV), "{msg}");
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    }

    #[test]
    fn malformed_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MASTER_KEY_FILE), "garbage").unwrap();
        let err = load_or_create_with(dir.path(), None).unwrap_err();
        assert!(matches!(err, SecretsError::MalformedKey { .. }));
        assert!(err.to_string().contains(MASTER_KEY_FILE));
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn bound_envelope_opens_only_for_its_origins() {
        let s = secrets();
        let env = s
            .seal_bound(
                "tok",
                &[
                    "https://wdc.xurrent.com",
                    "https://graphql.xurrent.com/",
                    "http://127.0.0.1:4780/accounts/wdc",
                ],
            )
            .unwrap();
        assert!(env.starts_with(ENVELOPE_PREFIX));
        assert!(is_envelope(&env));
        assert!(contains_envelope(&env));
        assert_eq!(redact_str(&format!("Bearer {env}")), "Bearer [secret]");
        assert_eq!(
            binding(&env).unwrap(),
            [
                "http://127.0.0.1:4780",
                "https://graphql.xurrent.com",
                "https://wdc.xurrent.com"
            ]
        );
        for ok in [
            "https://wdc.xurrent.com/v1/me",
            "https://graphql.xurrent.com/",
            "https://WDC.xurrent.com:443/x",
            "http://127.0.0.1:4780/graphql",
        ] {
            assert_eq!(s.open_for(&env, &url(ok)).unwrap().as_str(), "tok", "{ok}");
        }
        for (bad, origin) in [
            ("https://evil.example/graphql", "https://evil.example"),
            ("http://wdc.xurrent.com/", "http://wdc.xurrent.com"),
            (
                "https://wdc.xurrent.com:8443/",
                "https://wdc.xurrent.com:8443",
            ),
            ("http://127.0.0.1:4781/", "http://127.0.0.1:4781"),
            (
                "https://wdc.xurrent.com.evil.example/",
                "https://wdc.xurrent.com.evil.example",
            ),
        ] {
            let err = s.open_for(&env, &url(bad)).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, SecretsError::HostBound { .. }), "{bad}");
            assert!(
                msg.starts_with("this secret may only be sent to http://127.0.0.1:4780, https://graphql.xurrent.com, https://wdc.xurrent.com, not "),
                "{msg}"
            );
            assert!(msg.ends_with(origin), "{msg}");
            assert!(!msg.contains("tok"), "{msg}");
        }
        // Every generic path refuses it.
        let err = s.open(&env).unwrap_err();
        assert!(matches!(err, SecretsError::HostBound { .. }));
        assert!(err.to_string().contains("https://wdc.xurrent.com"), "{err}");
        assert!(matches!(
            s.reveal_in(&format!("Bearer {env}")),
            Err(SecretsError::HostBound { .. })
        ));
        assert!(matches!(
            s.reveal_value(&json!({"h": [format!("Bearer {env}")]})),
            Err(SecretsError::HostBound { .. })
        ));
        // Host-aware reveals of text and JSON, with an unbound secret alongside.
        let plain = s.seal("pw");
        let dest = url("https://wdc.xurrent.com/graphql");
        assert_eq!(
            s.reveal_in_for(&format!("Bearer {env} {plain}x"), &dest)
                .unwrap()
                .as_str(),
            "Bearer tok pwx"
        );
        assert_eq!(
            s.reveal_value_for(&json!({"a": [env.clone()], "b": plain}), &dest)
                .unwrap(),
            json!({"a": ["tok"], "b": "pw"})
        );
        let evil = url("https://evil.example/");
        let err = s
            .reveal_value_for(&json!({"a": [format!("{env}abc")]}), &evil)
            .unwrap_err();
        assert!(
            err.to_string().ends_with("not https://evil.example"),
            "{err}"
        );
        // Unbound envelopes (version 1, as sealed before) open everywhere.
        assert_eq!(s.open_for(&plain, &evil).unwrap().as_str(), "pw");
        assert_eq!(binding(&plain), None);
    }

    #[test]
    fn old_version_1_envelopes_still_open() {
        // Sealed by the version 1 code under the key [7; 32]; must open forever.
        let s = secrets();
        let env = s.seal("kept");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&env[ENVELOPE_PREFIX.len()..])
            .unwrap();
        assert_eq!(payload[0], 1);
        assert_eq!(payload.len(), MIN_PAYLOAD + 4);
        assert_eq!(s.open(&env).unwrap().as_str(), "kept");
        assert_eq!(
            s.open(FIXED_V1).unwrap().as_str(),
            "v1",
            "a version 1 envelope made before host binding"
        );
    }

    /// A version 1 envelope of `v1` under the key `[7; 32]` (made independently of this code).
    const FIXED_V1: &str = "fsec1.AT_3vUUJHnC3TM94uNqb3c_hmm44koMrKUZblExYzUXOaj6GN_rJItAm4RTNIP1NeOdtC49U0AML-8d_YN-2ffgSRzAIKW6WKi1TKyl5r7RW2KANZ_pquJLcSA";

    #[test]
    fn binding_cannot_be_changed_or_stripped() {
        let s = secrets();
        let env = s.seal_bound("tok", &["https://a.example"]).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&env[ENVELOPE_PREFIX.len()..])
            .unwrap();
        let enc = |p: &[u8]| {
            format!(
                "{ENVELOPE_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(p)
            )
        };
        // Rebinding to another host (same length) does not authenticate.
        let text = String::from_utf8_lossy(&payload).replace("a.example", "e.example");
        let mut p = payload.clone();
        let at = p.windows(9).position(|w| w == b"a.example").unwrap();
        p[at] = b'e';
        assert!(text.contains("e.example"));
        let rebound = enc(&p);
        assert_eq!(binding(&rebound).unwrap(), ["https://e.example"]);
        assert!(matches!(
            s.open_for(&rebound, &url("https://e.example/")),
            Err(SecretsError::Decryption)
        ));
        // Stripping the binding (turning it into a version 1 envelope) does not authenticate.
        let header = 3 + "https://a.example".len();
        let mut stripped = vec![VERSION];
        stripped.extend_from_slice(&payload[header..]);
        assert!(matches!(
            s.open(&enc(&stripped)),
            Err(SecretsError::Decryption)
        ));
        // Every flipped byte fails (binding, lengths, crypto parts).
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x01;
            assert!(
                s.open_for(&enc(&p), &url("https://a.example/")).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn bad_bindings_are_refused() {
        let s = secrets();
        for (origins, part) in [
            (
                vec!["http://wdc.xurrent.com"],
                "only allowed on a loopback host",
            ),
            (vec!["ftp://x.example"], "scheme ftp"),
            (vec!["wdc.xurrent.com"], "not a URL"),
            (vec![], "no origin given"),
        ] {
            let err = s.seal_bound("x", &origins).unwrap_err().to_string();
            assert!(err.contains(part), "{err}");
        }
        assert!(s.seal_bound("x", &["http://localhost:1/"]).is_ok());
        assert!(s.seal_bound("x", &["http://[::1]:1/"]).is_ok());
    }
}

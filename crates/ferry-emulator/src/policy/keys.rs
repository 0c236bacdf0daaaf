//! Webhook policy key material: key generation for every supported `jwt_alg`, JWT signing and
//! the public JWK served by OpenID Connect discovery. Pure: no emulator state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::Value;

/// Errors of key generation and signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm is a valid Xurrent value that the emulator cannot produce.
    #[error("jwt_alg '{0}' is not supported by the emulator")]
    Unsupported(String),
    /// The algorithm name is not a Xurrent `jwt_alg` value.
    #[error("jwt_alg '{0}' is not valid")]
    Invalid(String),
    /// Encoding the generated key failed.
    #[error("key encoding failed: {0}")]
    Encoding(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The `jwt_alg` values of a webhook policy (lower case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlg {
    /// Unsigned tokens.
    None,
    /// HMAC SHA-256.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// RSA PKCS#1 v1.5 SHA-256.
    Rs256,
    /// RSA PKCS#1 v1.5 SHA-384.
    Rs384,
    /// RSA PKCS#1 v1.5 SHA-512.
    Rs512,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// ECDSA P-521 SHA-512 (valid in Xurrent, not supported by the emulator).
    Es512,
}

impl JwtAlg {
    /// Parses a `jwt_alg` value, case-insensitively.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        Ok(match value.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "hs256" => Self::Hs256,
            "hs384" => Self::Hs384,
            "hs512" => Self::Hs512,
            "rs256" => Self::Rs256,
            "rs384" => Self::Rs384,
            "rs512" => Self::Rs512,
            "es256" => Self::Es256,
            "es384" => Self::Es384,
            "es512" => Self::Es512,
            _ => return Err(KeyError::Invalid(value.to_string())),
        })
    }

    /// The lower-case wire value (`es256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hs256 => "hs256",
            Self::Hs384 => "hs384",
            Self::Hs512 => "hs512",
            Self::Rs256 => "rs256",
            Self::Rs384 => "rs384",
            Self::Rs512 => "rs512",
            Self::Es256 => "es256",
            Self::Es384 => "es384",
            Self::Es512 => "es512",
        }
    }

    /// The JOSE `alg` header value (`ES256`).
    pub fn jose_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    fn jsonwebtoken(self) -> Option<Algorithm> {
        Some(match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Hs384 => Algorithm::HS384,
            Self::Hs512 => Algorithm::HS512,
            Self::Rs256 => Algorithm::RS256,
            Self::Rs384 => Algorithm::RS384,
            Self::Rs512 => Algorithm::RS512,
            Self::Es256 => Algorithm::ES256,
            Self::Es384 => Algorithm::ES384,
            Self::None | Self::Es512 => return None,
        })
    }
}

#[derive(Clone)]
enum Signer {
    Unsigned,
    Hmac(Vec<u8>),
    Rsa(Vec<u8>),
    Ec(Vec<u8>),
}

/// The key pair (or shared secret) of one webhook policy.
#[derive(Clone)]
pub struct PolicyKey {
    /// The policy algorithm.
    pub alg: JwtAlg,
    /// What the create response returns as `public_key_pem`: an SPKI PEM for RS*/ES*, the shared
    /// secret for HS*, `None` for `none`.
    pub public_key_pem: Option<String>,
    /// The public key as a JWK (without `kid`/`use`/`alg`), for RS* and ES* only.
    pub public_jwk: Option<Value>,
    signer: Signer,
}

impl std::fmt::Debug for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyKey")
            .field("alg", &self.alg)
            .field("public_key_pem", &self.public_key_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn enc_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Encoding(e.to_string())
}

impl PolicyKey {
    /// Generates fresh key material for `alg` (RSA keys are 2048 bits).
    pub fn generate(alg: JwtAlg) -> Result<Self, KeyError> {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rand::rngs::OsRng;
        match alg {
            JwtAlg::None => Ok(Self {
                alg,
                public_key_pem: None,
                public_jwk: None,
                signer: Signer::Unsigned,
            }),
            JwtAlg::Hs256 | JwtAlg::Hs384 | JwtAlg::Hs512 => {
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                let secret = hex::encode(bytes);
                Ok(Self {
                    alg,
                    signer: Signer::Hmac(secret.as_bytes().to_vec()),
                    public_key_pem: Some(secret),
                    public_jwk: None,
                })
            }
            JwtAlg::Es256 => {
                let sk = p256::SecretKey::random(&mut rng);
                let pem = sk.to_pkcs8_pem(LineEnding::LF).map_err(enc_err)?;
                let public = sk.public_key();
                let public_pem = public.to_public_key_pem(LineEnding::LF).map_err(enc_err)?;
                let jwk: Value = serde_json::from_str(&public.to_jwk_string()).map_err(enc_err)?;
                Ok(Self {
                    alg,
                    signer: Signer::Ec(pem.as_bytes().to_vec()),
                    public_key_pem: Some(public_pem),
                    public_jwk: Some(jwk),
                })
            }
            JwtAlg::Es384 => {
                let sk = p384::SecretKey::random(&mut rng);
                let pem = sk.to_pkcs8_pem(LineEnding::LF).map_err(enc_err)?;
                let public = sk.public_key();
                let public_pem = public.to_public_key_pem(LineEnding::LF).map_err(enc_err)?;
                let jwk: Value = serde_json::from_str(&public.to_jwk_string()).map_err(enc_err)?;
                Ok(Self {
                    alg,
                    signer: Signer::Ec(pem.as_bytes().to_vec()),
                    public_key_pem: Some(public_pem),
                    public_jwk: Some(jwk),
                })
            }
            JwtAlg::Rs256 | JwtAlg::Rs384 | JwtAlg::Rs512 => {
                use rsa::traits::PublicKeyParts;
                let sk = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(enc_err)?;
                let pem = sk.to_pkcs8_pem(LineEnding::LF).map_err(enc_err)?;
                let public = sk.to_public_key();
                let public_pem = public.to_public_key_pem(LineEnding::LF).map_err(enc_err)?;
                let jwk = serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                });
                Ok(Self {
                    alg,
                    signer: Signer::Rsa(pem.as_bytes().to_vec()),
                    public_key_pem: Some(public_pem),
                    public_jwk: Some(jwk),
                })
            }
            JwtAlg::Es512 => Err(KeyError::Unsupported(alg.as_str().to_string())),
        }
    }

    /// The record fields that carry this key in a `WebhookPolicy` record: `publicKeyPem`
    /// (public), `_signingKey` and `_publicJwk` (private, never exposed).
    pub fn to_fields(&self) -> serde_json::Map<String, Value> {
        let (kind, material) = match &self.signer {
            Signer::Unsigned => ("none", String::new()),
            Signer::Hmac(b) => ("hmac", String::from_utf8_lossy(b).into_owned()),
            Signer::Rsa(b) => ("rsa", String::from_utf8_lossy(b).into_owned()),
            Signer::Ec(b) => ("ec", String::from_utf8_lossy(b).into_owned()),
        };
        let mut m = serde_json::Map::new();
        m.insert(
            "publicKeyPem".into(),
            self.public_key_pem
                .clone()
                .map_or(Value::Null, Value::String),
        );
        m.insert(
            "_signingKey".into(),
            serde_json::json!({"alg": self.alg.as_str(), "kind": kind, "material": material}),
        );
        m.insert(
            "_publicJwk".into(),
            self.public_jwk.clone().unwrap_or(Value::Null),
        );
        m
    }

    /// Reads the key back from a record written with [`PolicyKey::to_fields`].
    pub fn from_fields(rec: &serde_json::Map<String, Value>) -> Option<Self> {
        let sk = rec.get("_signingKey")?;
        let alg = JwtAlg::parse(sk.get("alg")?.as_str()?).ok()?;
        let material = sk.get("material")?.as_str()?.as_bytes().to_vec();
        let signer = match sk.get("kind")?.as_str()? {
            "none" => Signer::Unsigned,
            "hmac" => Signer::Hmac(material),
            "rsa" => Signer::Rsa(material),
            "ec" => Signer::Ec(material),
            _ => return None,
        };
        Some(Self {
            alg,
            public_key_pem: rec
                .get("publicKeyPem")
                .and_then(Value::as_str)
                .map(str::to_string),
            public_jwk: rec.get("_publicJwk").filter(|v| v.is_object()).cloned(),
            signer,
        })
    }

    /// The public JWK as served in a JWKS: with `kid`, `use: sig` and `alg`. `None` for HS*/none.
    pub fn jwk(&self, kid: &str) -> Option<Value> {
        let mut jwk = self.public_jwk.clone()?;
        let obj = jwk.as_object_mut()?;
        obj.insert("kid".into(), Value::String(kid.to_string()));
        obj.insert("use".into(), Value::String("sig".into()));
        obj.insert("alg".into(), Value::String(self.alg.jose_name()));
        Some(jwk)
    }

    /// Signs `claims` as a compact JWS with header `{typ: "JWT", alg}`, plus `kid` when given
    /// (Xurrent names the key only for policies used through OpenID Connect discovery).
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> Result<String, KeyError> {
        let key = match &self.signer {
            Signer::Unsigned => {
                let mut header = serde_json::json!({"typ": "JWT", "alg": "none"});
                if let Some(kid) = kid {
                    header["kid"] = Value::String(kid.to_string());
                }
                return Ok(format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                ));
            }
            Signer::Hmac(secret) => EncodingKey::from_secret(secret),
            Signer::Rsa(pem) => {
                EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError::Signing(e.to_string()))?
            }
            Signer::Ec(pem) => {
                EncodingKey::from_ec_pem(pem).map_err(|e| KeyError::Signing(e.to_string()))?
            }
        };
        let alg = self
            .alg
            .jsonwebtoken()
            .ok_or_else(|| KeyError::Unsupported(self.alg.as_str().to_string()))?;
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| KeyError::Signing(e.to_string()))
    }
}

/// A random JWT id: 64 lower-case hex characters.
pub fn random_jti() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A random URL-safe token of `bytes` random bytes, hex encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    fn claims() -> Value {
        serde_json::json!({"sub": "abc", "iss": "http://x", "aud": "public", "data": {"event": "x"}})
    }

    fn verify(key: &PolicyKey, alg: Algorithm, token: &str) -> Value {
        let pem = key.public_key_pem.clone().unwrap();
        let dk = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                DecodingKey::from_ec_pem(pem.as_bytes()).unwrap()
            }
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
            }
            _ => DecodingKey::from_secret(pem.as_bytes()),
        };
        let mut v = Validation::new(alg);
        v.set_audience(&["public"]);
        v.required_spec_claims.clear();
        decode::<Value>(token, &dk, &v).unwrap().claims
    }

    #[test]
    fn es256_round_trip_and_jwk() {
        let key = PolicyKey::generate(JwtAlg::Es256).unwrap();
        assert!(key
            .public_key_pem
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        let token = key.sign(Some("k1"), &claims()).unwrap();
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), Some("k1"));
        let plain = key.sign(None, &claims()).unwrap();
        let header = decode_header(&plain).unwrap();
        assert_eq!(header.kid, None);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(verify(&key, Algorithm::ES256, &token)["data"]["event"], "x");
        let jwk = key.jwk("k1").unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "ES256");
        // The JWK converts back to a key that verifies the token.
        let dk =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["public"]);
        v.required_spec_claims.clear();
        assert!(decode::<Value>(&token, &dk, &v).is_ok());
    }

    #[test]
    fn es384_and_hmac_round_trip() {
        let key = PolicyKey::generate(JwtAlg::Es384).unwrap();
        let token = key.sign(Some("k"), &claims()).unwrap();
        assert_eq!(verify(&key, Algorithm::ES384, &token)["sub"], "abc");
        for (alg, ja) in [
            (JwtAlg::Hs256, Algorithm::HS256),
            (JwtAlg::Hs512, Algorithm::HS512),
        ] {
            let key = PolicyKey::generate(alg).unwrap();
            assert!(key.jwk("k").is_none());
            let token = key.sign(Some("k"), &claims()).unwrap();
            assert_eq!(verify(&key, ja, &token)["sub"], "abc");
        }
    }

    #[test]
    fn rs256_round_trip_and_jwk() {
        let key = PolicyKey::generate(JwtAlg::Rs256).unwrap();
        let token = key.sign(Some("r"), &claims()).unwrap();
        assert_eq!(verify(&key, Algorithm::RS256, &token)["sub"], "abc");
        let jwk = key.jwk("r").unwrap();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        let dk = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["public"]);
        v.required_spec_claims.clear();
        assert!(decode::<Value>(&token, &dk, &v).is_ok());
    }

    #[test]
    fn wrong_key_fails_verification() {
        let a = PolicyKey::generate(JwtAlg::Es256).unwrap();
        let b = PolicyKey::generate(JwtAlg::Es256).unwrap();
        let token = a.sign(Some("k"), &claims()).unwrap();
        let dk = DecodingKey::from_ec_pem(b.public_key_pem.unwrap().as_bytes()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["public"]);
        v.required_spec_claims.clear();
        assert!(decode::<Value>(&token, &dk, &v).is_err());
    }

    #[test]
    fn none_is_unsigned_and_es512_unsupported() {
        let key = PolicyKey::generate(JwtAlg::None).unwrap();
        let token = key.sign(Some("k"), &claims()).unwrap();
        assert!(token.ends_with('.'));
        assert_eq!(token.split('.').count(), 3);
        assert!(matches!(
            PolicyKey::generate(JwtAlg::Es512),
            Err(KeyError::Unsupported(_))
        ));
        assert!(matches!(JwtAlg::parse("ps256"), Err(KeyError::Invalid(_))));
        assert_eq!(JwtAlg::parse("ES256").unwrap(), JwtAlg::Es256);
    }

    #[test]
    fn fields_round_trip() {
        let key = PolicyKey::generate(JwtAlg::Es256).unwrap();
        let fields = key.to_fields();
        let back = PolicyKey::from_fields(&fields).unwrap();
        assert_eq!(back.public_key_pem, key.public_key_pem);
        let token = back.sign(None, &claims()).unwrap();
        assert_eq!(verify(&key, Algorithm::ES256, &token)["sub"], "abc");
        assert!(PolicyKey::from_fields(&serde_json::Map::new()).is_none());
    }

    #[test]
    fn jti_is_64_hex() {
        let j = random_jti();
        assert_eq!(j.len(), 64);
        assert!(j.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(j, random_jti());
    }
}

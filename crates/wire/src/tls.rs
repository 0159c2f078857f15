//! Mutual TLS 1.3 in which each side pins the other's Ed25519 identity key. No certificate
//! authority is involved: each party presents a self-signed certificate carrying its identity
//! key, and the peer accepts it only if that key is pinned. The certificate's own signature,
//! names and validity dates carry no trust; the `CertificateVerify` signature of the TLS 1.3
//! handshake proves that the peer holds the pinned key.
//!
//! - [`server_config`] (the coordinator): requires a client certificate whose key the
//!   [`PinStore`] pins; the store can change at run time (enrollment, revocation), and session
//!   resumption is off so every connection is checked against the current pins.
//! - [`client_config`] (a module): accepts exactly one server key.
//! - Both: TLS 1.3 only, `ring` provider, ALPN `h2` (gRPC runs over these connections),
//!   Ed25519 the only handshake signature scheme.
//! - [`peer_identity`] tells an accepted connection's peer from its certificate, e.g. from
//!   `rustls::CommonState::peer_certificates()`.
//!
//! Our own handshake signatures are made by ed25519-dalek with the [`IdentityKey`] itself, so
//! the secret key is held only by the zeroizing identity type.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime, alg_id,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    PeerMisbehaved, ServerConfig, SignatureAlgorithm, SignatureScheme,
};

use crate::identity::IdentitySigner;
use crate::{IdentityKey, PublicIdentity, WireError};

/// The ALPN protocol both sides offer: HTTP/2, for gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// The name written in the certificates [`server_config`] and [`client_config`] present.
/// Names are not checked (the pinned key is the trust), so a client may connect under any
/// server name.
pub const CERTIFICATE_NAME: &str = "concord";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): `SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }`, followed by the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Which peer identity keys a TLS server accepts. Implemented for sets behind a `RwLock` so a
/// coordinator can enroll and revoke modules while it runs.
pub trait PinStore: Send + Sync + 'static {
    /// Whether `key` is pinned (a poisoned lock counts as not pinned).
    fn is_pinned(&self, key: &PublicIdentity) -> bool;
}

impl PinStore for RwLock<HashSet<PublicIdentity>> {
    fn is_pinned(&self, key: &PublicIdentity) -> bool {
        self.read().map(|set| set.contains(key)).unwrap_or(false)
    }
}

impl PinStore for RwLock<Vec<PublicIdentity>> {
    fn is_pinned(&self, key: &PublicIdentity) -> bool {
        self.read().map(|list| list.contains(key)).unwrap_or(false)
    }
}

impl PinStore for HashSet<PublicIdentity> {
    fn is_pinned(&self, key: &PublicIdentity) -> bool {
        self.contains(key)
    }
}

/// A self-signed X.509 certificate for `identity`, with `subject_name` as its common name and
/// its one subject alternative name (a DNS name or an IP address), and the identity key as
/// PKCS#8 (v2) for TLS stacks that want a key file. The certificate is signed by the identity
/// key itself.
pub fn self_signed_certificate(
    identity: &IdentityKey,
    subject_name: &str,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), WireError> {
    let cert = certificate(identity, subject_name)?;
    let pkcs8 = identity
        .signing_key()
        .to_pkcs8_der()
        .map_err(|e| WireError::tls_setup(format!("PKCS#8 encoding failed: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()));
    Ok((cert, key))
}

fn certificate(
    identity: &dyn IdentitySigner,
    subject_name: &str,
) -> Result<CertificateDer<'static>, WireError> {
    ServerName::try_from(subject_name).map_err(|e| {
        WireError::tls_setup(format!(
            "{subject_name:?} is neither a DNS name nor an IP address: {e}"
        ))
    })?;
    let mut params = rcgen::CertificateParams::new(vec![subject_name.to_owned()])
        .map_err(|e| WireError::tls_setup(format!("bad subject name {subject_name:?}: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject_name);
    let key_pair = rcgen::KeyPair::from_remote(Box::new(RcgenSigner {
        public: identity.public().as_bytes().to_vec(),
        key: identity.handle(),
    }))
    .map_err(|e| WireError::tls_setup(format!("certificate key: {e}")))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| WireError::tls_setup(format!("certificate signing failed: {e}")))?;
    Ok(cert.der().clone())
}

/// Signs the certificate for rcgen with the identity signer (the dalek key, or a token).
struct RcgenSigner {
    key: Arc<dyn IdentitySigner>,
    public: Vec<u8>,
}

impl rcgen::RemoteKeyPair for RcgenSigner {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key
            .try_sign(msg)
            .map(|s| s.to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// The identity key of a peer, from the certificate chain it presented (its first, end-entity
/// certificate). Fails unless that certificate parses and carries an Ed25519 key.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<PublicIdentity, WireError> {
    let cert = certs.first().ok_or(WireError::NoPeerCertificate)?;
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| WireError::BadCertificate {
        reason: e.to_string(),
    })?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|k| <&[u8; 32]>::try_from(k).ok())
        .ok_or(WireError::NotEd25519)?;
    PublicIdentity::from_bytes(key)
}

/// The TLS configuration of a server (the coordinator) that accepts only clients whose
/// identity key `pins` pins.
pub fn server_config(
    identity: &dyn IdentitySigner,
    pins: Arc<dyn PinStore>,
) -> Result<Arc<ServerConfig>, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedClientVerifier {
        pins,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(WireError::tls_setup)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(own_certificate(identity)?);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // A resumed session skips the client certificate check; no resumption keeps revocation
    // immediate.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The TLS configuration of a client (a module) that accepts only the server holding
/// `server_pin`, and authenticates with `identity`.
pub fn client_config(
    identity: &dyn IdentitySigner,
    server_pin: PublicIdentity,
) -> Result<Arc<ClientConfig>, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedServerVerifier {
        pin: server_pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(WireError::tls_setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(own_certificate(identity)?);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(Arc::new(config))
}

fn own_certificate(identity: &dyn IdentitySigner) -> Result<Arc<SingleCertAndKey>, WireError> {
    let cert = certificate(identity, CERTIFICATE_NAME)?;
    let key = Arc::new(TlsKey(identity.handle()));
    Ok(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
        vec![cert],
        key,
    ))))
}

/// Our identity signer as a rustls signing key (Ed25519 only).
struct TlsKey(Arc<dyn IdentitySigner>);

impl fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsKey(<redacted>)")
    }
}

impl rustls::sign::SigningKey for TlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        if offered.contains(&SignatureScheme::ED25519) {
            Some(Box::new(TlsKey(self.0.clone())))
        } else {
            None
        }
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(rustls::sign::public_key_to_spki(
            &alg_id::ED25519,
            self.0.public().as_bytes(),
        ))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

impl rustls::sign::Signer for TlsKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .try_sign(message)
            .map(|s| s.to_vec())
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// A rustls certificate error carrying our own explanation (it shows in the handshake error).
fn refuse(err: WireError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// The pinned identity of a presented chain: one self-signed certificate, Ed25519, pinned.
fn check_pinned(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    is_pinned: impl FnOnce(&PublicIdentity) -> bool,
) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(refuse(WireError::BadCertificate {
            reason: "a pinned peer presents one certificate, not a chain".into(),
        }));
    }
    let key = peer_identity(std::slice::from_ref(end_entity)).map_err(refuse)?;
    if is_pinned(&key) {
        Ok(())
    } else {
        Err(refuse(WireError::UnpinnedPeer {
            fingerprint: key.fingerprint(),
        }))
    }
}

/// Checks the TLS 1.3 `CertificateVerify` signature: Ed25519 only, with the certificate's key.
fn check_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not accepted: Concord speaks TLS 1.3 only".into())
}

struct PinnedClientVerifier {
    pins: Arc<dyn PinStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedClientVerifier")
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_pinned(end_entity, intermediates, |key| self.pins.is_pinned(key))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct PinnedServerVerifier {
    pin: PublicIdentity,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_pinned(end_entity, intermediates, |key| *key == self.pin)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn self_signed_certificate_carries_the_identity_key() {
        let id = IdentityKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let (cert, key) = self_signed_certificate(&id, "module-1.concord").unwrap();
        assert_eq!(
            peer_identity(std::slice::from_ref(&cert)).unwrap(),
            id.public()
        );
        // The PKCS#8 key loads in rustls' ring provider and matches the certificate.
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        assert_eq!(signer.algorithm(), SignatureAlgorithm::ED25519);
        CertifiedKey::new(vec![cert], signer).keys_match().unwrap();
    }

    #[test]
    fn self_signed_certificate_accepts_ip_names_and_rejects_garbage() {
        let id = IdentityKey::generate(&mut ChaCha20Rng::seed_from_u64(2));
        self_signed_certificate(&id, "127.0.0.1").unwrap();
        assert!(matches!(
            self_signed_certificate(&id, "not a name\u{0}"),
            Err(WireError::TlsSetup(_))
        ));
    }

    #[test]
    fn peer_identity_rejects_missing_garbage_and_non_ed25519_certificates() {
        assert!(matches!(
            peer_identity(&[]),
            Err(WireError::NoPeerCertificate)
        ));
        assert!(matches!(
            peer_identity(&[CertificateDer::from(vec![0x30, 0x00])]),
            Err(WireError::BadCertificate { .. })
        ));
        let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&ecdsa)
            .unwrap();
        assert!(matches!(
            peer_identity(&[cert.der().clone()]),
            Err(WireError::NotEd25519)
        ));
    }

    #[test]
    fn own_tls_key_matches_its_certificate() {
        let id = IdentityKey::generate(&mut ChaCha20Rng::seed_from_u64(3));
        let cert = certificate(&id, CERTIFICATE_NAME).unwrap();
        let key = Arc::new(TlsKey(id.handle()));
        CertifiedKey::new(vec![cert], key).keys_match().unwrap();
    }

    #[test]
    fn pin_stores_answer_membership() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let a = IdentityKey::generate(&mut rng).public();
        let b = IdentityKey::generate(&mut rng).public();
        let set = RwLock::new(HashSet::from([a]));
        assert!(set.is_pinned(&a) && !set.is_pinned(&b));
        set.write().unwrap().insert(b);
        assert!(set.is_pinned(&b));
        let list = RwLock::new(vec![b]);
        assert!(list.is_pinned(&b) && !list.is_pinned(&a));
    }
}

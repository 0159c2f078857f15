//! HTTPS for the coordinator's REST API.
//!
//! Unlike the module link ([`crate::tls`]), the API's clients are people and scripts, so its
//! certificate is an ordinary X.509 server certificate, made or brought by the operator:
//!
//! - [`self_signed`] makes one (ECDSA P-256) for `127.0.0.1`, `localhost` and any names the
//!   operator gives; [`load_pem`] loads an operator's certificate chain and key.
//! - [`server_config`] is the coordinator's rustls configuration: TLS 1.3 only, ALPN
//!   `http/1.1`; [`TlsListener`] serves an axum router over it.
//! - Clients trust the server in one of two ways. [`pinned_client_config`]: the SHA-256
//!   [`CertFingerprint`] of the server's end-entity certificate, printed by `concord
//!   coordinator init` (like a module's key fingerprint); names, dates and issuers carry no
//!   trust, and the handshake signature still proves the server holds the certificate's key.
//!   [`ca_client_config`]: a certificate authority the operator names, with the usual WebPKI
//!   checks (chain, dates, the URL's host name).
//! - A certificate that is not the pinned one fails the handshake with a [`PinMismatch`]
//!   naming both fingerprints; [`find_pin_mismatch`] finds it in an HTTP client's error chain.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::WireError;

/// The ALPN protocol of the API: HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The names every self-signed API certificate carries, besides the operator's own.
pub const DEFAULT_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SHA-256 of a certificate's DER encoding: what a client pins. Shown as 64 lowercase hex
/// digits; read from hex in either case, with or without colons between bytes (as `openssl
/// x509 -noout -fingerprint -sha256` prints it) and an optional `sha256:` in front.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// The fingerprint of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> CertFingerprint {
        CertFingerprint(Sha256::digest(cert.as_ref()).into())
    }

    /// Whether `other` is this fingerprint, compared in constant time.
    pub fn matches(&self, other: &CertFingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = WireError;

    fn from_str(s: &str) -> Result<CertFingerprint, WireError> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .or_else(|| s.strip_prefix("sha256 Fingerprint="))
            .or_else(|| s.strip_prefix("SHA256 Fingerprint="))
            .unwrap_or(s);
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| WireError::InvalidKey {
            what: "certificate fingerprint",
            reason: format!(
                "{s:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed between bytes)"
            ),
        })?;
        Ok(CertFingerprint(out))
    }
}

/// A new self-signed API certificate and its key, both PEM.
pub struct SelfSigned {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM), wiped when dropped.
    pub key_pem: zeroize::Zeroizing<String>,
    /// The certificate's fingerprint.
    pub fingerprint: CertFingerprint,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("fingerprint", &self.fingerprint)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A self-signed ECDSA P-256 certificate for [`DEFAULT_NAMES`] and `names` (DNS names or IP
/// addresses), as subject alternative names.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, WireError> {
    let mut sans: Vec<String> = DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for n in names {
        ServerName::try_from(n.as_str()).map_err(|e| {
            WireError::tls_setup(format!(
                "{n:?} is neither a DNS name nor an IP address: {e}"
            ))
        })?;
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let mut params = rcgen::CertificateParams::new(sans)
        .map_err(|e| WireError::tls_setup(format!("bad certificate name: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "concord coordinator API");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| WireError::tls_setup(format!("key generation failed: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| WireError::tls_setup(format!("certificate signing failed: {e}")))?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
        fingerprint: CertFingerprint::of(cert.der()),
    })
}

/// Reads a PEM certificate chain (the server's certificate first) and its private key.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), WireError> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        WireError::tls_setup(format!(
            "{} does not hold a PEM private key: {e}",
            key.display()
        ))
    })?;
    Ok((chain, key))
}

/// Every certificate in a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, WireError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            WireError::tls_setup(format!(
                "cannot read PEM certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(WireError::tls_setup(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_pem(path: &Path) -> Result<CertFingerprint, WireError> {
    let certs = read_certs(path)?;
    Ok(CertFingerprint::of(&certs[0]))
}

/// The API server's TLS configuration: `chain` (its certificate first) with `key`, TLS 1.3
/// only, ALPN `http/1.1`. Fails if the key is not the certificate's.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(WireError::tls_setup)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| WireError::tls_setup(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// A client configuration that accepts only the server whose end-entity certificate has the
/// fingerprint `pin` (TLS 1.3, ALPN `http/1.1`).
pub fn pinned_client_config(pin: CertFingerprint) -> Result<ClientConfig, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertVerifier::new(pin, provider.signature_verification_algorithms);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(WireError::tls_setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// A client configuration that trusts the certificate authorities in the PEM file `ca` (and
/// no others), with the usual checks of chain, dates and the server's name.
pub fn ca_client_config(ca: &Path) -> Result<ClientConfig, WireError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|e| {
            WireError::tls_setup(format!(
                "{} holds a certificate that cannot be a trust anchor: {e}",
                ca.display()
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(WireError::tls_setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// The server presented a certificate other than the pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// The fingerprint the client pins.
    pub pinned: CertFingerprint,
    /// The fingerprint of the certificate the server presented.
    pub presented: CertFingerprint,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has fingerprint {}, not the pinned {}",
            self.presented, self.pinned
        )
    }
}

impl std::error::Error for PinMismatch {}

/// The [`PinMismatch`] somewhere in an error's chain of causes (an HTTP client's error wraps
/// an I/O error that wraps the rustls error that carries it), if any.
pub fn find_pin_mismatch<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a PinMismatch> {
    find_rustls_error(err).and_then(|e| match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PinMismatch>()
        }
        _ => None,
    })
}

/// The rustls error somewhere in an error's chain of causes, if any. `std::io::Error`'s
/// `source` skips the error it wraps, so each I/O error is opened with `get_ref`.
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = find_rustls_error(inner)
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// Accepts the server whose end-entity certificate has the pinned fingerprint, and verifies
/// the handshake signature with that certificate's key (rustls' own helpers), so a server
/// that merely replays the certificate is refused. Names, dates and issuers are not checked:
/// the pin is the trust.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pin: CertFingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// A verifier pinning `pin`, checking handshake signatures with `algorithms`.
    pub fn new(pin: CertFingerprint, algorithms: WebPkiSupportedAlgorithms) -> Self {
        PinnedCertVerifier { pin, algorithms }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertFingerprint::of(end_entity);
        if self.pin.matches(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    pinned: self.pin,
                    presented,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A listener for `axum::serve` that completes each TLS handshake in its own task (a slow or
/// failed handshake never holds up the others) and hands over only finished connections.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => break,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accepting task has ended (it never does while this listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rustls::sign::{CertifiedKey, SingleCertAndKey};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn chain_and_key(s: &SelfSigned) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(s.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(s.key_pem.as_bytes()).unwrap();
        (chain, key)
    }

    /// Serves one HTTP/1.1 answer over TLS with `config` on 127.0.0.1; its address.
    async fn server(config: Arc<ServerConfig>) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, config).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A GET / over TLS with `config`, as server name `name`: the answer's body, or the
    /// handshake's error.
    async fn get(
        addr: SocketAddr,
        config: ClientConfig,
        name: &str,
    ) -> Result<String, std::io::Error> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut tls = connector
            .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[test]
    fn fingerprints_read_hex_in_every_usual_form() {
        let f = CertFingerprint([0xab; 32]);
        let plain = f.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(plain.parse::<CertFingerprint>().unwrap(), f);
        let openssl = format!(
            "sha256 Fingerprint={}",
            f.0.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        );
        assert_eq!(openssl.parse::<CertFingerprint>().unwrap(), f);
        assert_eq!(
            format!("sha256:{plain}")
                .parse::<CertFingerprint>()
                .unwrap(),
            f
        );
        assert!("abcd".parse::<CertFingerprint>().is_err());
        assert!(format!("{plain}00").parse::<CertFingerprint>().is_err());
        assert!("zz".repeat(32).parse::<CertFingerprint>().is_err());
        assert!(f.matches(&f) && !f.matches(&CertFingerprint([0xac; 32])));
    }

    #[test]
    fn self_signed_certificates_name_loopback_and_refuse_bad_names() {
        let s = self_signed(&["coordinator.example".into()]).unwrap();
        let (chain, key) = chain_and_key(&s);
        assert_eq!(CertFingerprint::of(&chain[0]), s.fingerprint);
        let cert = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
        for name in ["127.0.0.1", "localhost", "coordinator.example"] {
            cert.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
                .unwrap();
        }
        server_config(chain, key).unwrap();
        assert!(self_signed(&["not a name".into()]).is_err());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (a, b) = (self_signed(&[]).unwrap(), self_signed(&[]).unwrap());
        let (chain, _) = chain_and_key(&a);
        let (_, key) = chain_and_key(&b);
        assert!(server_config(chain, key).is_err());
    }

    #[tokio::test]
    async fn the_pinned_certificate_is_accepted_under_any_name() {
        let s = self_signed(&[]).unwrap();
        let (chain, key) = chain_and_key(&s);
        let addr = server(server_config(chain, key).unwrap()).await;
        for name in ["127.0.0.1", "some-other-name"] {
            let answer = get(addr, pinned_client_config(s.fingerprint).unwrap(), name)
                .await
                .unwrap();
            assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"));
        }
    }

    #[tokio::test]
    async fn another_certificate_is_refused_naming_both_fingerprints() {
        let (served, pinned) = (self_signed(&[]).unwrap(), self_signed(&[]).unwrap());
        let (chain, key) = chain_and_key(&served);
        let addr = server(server_config(chain, key).unwrap()).await;
        let err = get(
            addr,
            pinned_client_config(pinned.fingerprint).unwrap(),
            "localhost",
        )
        .await
        .unwrap_err();
        let mismatch = find_pin_mismatch(&err).expect("a pin mismatch in the chain");
        assert_eq!(
            mismatch,
            &PinMismatch {
                pinned: pinned.fingerprint,
                presented: served.fingerprint,
            }
        );
        let text = mismatch.to_string();
        assert!(text.contains(&served.fingerprint.to_string()));
        assert!(text.contains(&pinned.fingerprint.to_string()));
    }

    /// A server that presents the pinned certificate without holding its key cannot sign the
    /// handshake: the signature check refuses it even though the fingerprint matches.
    #[tokio::test]
    async fn a_server_replaying_the_pinned_certificate_without_its_key_is_refused() {
        let (real, other) = (self_signed(&[]).unwrap(), self_signed(&[]).unwrap());
        let (real_chain, _) = chain_and_key(&real);
        let (_, other_key) = chain_and_key(&other);
        let signer = rustls::crypto::ring::sign::any_supported_type(&other_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
                real_chain, signer,
            ))));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        let addr = server(Arc::new(config)).await;
        let err = get(
            addr,
            pinned_client_config(real.fingerprint).unwrap(),
            "localhost",
        )
        .await
        .unwrap_err();
        assert!(find_pin_mismatch(&err).is_none());
        assert!(
            matches!(
                find_rustls_error(&err),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                ))
            ),
            "{err:?}"
        );
    }

    /// With a CA: a certificate the CA issued for the name is accepted; another CA's, or the
    /// same certificate under a name it does not carry, is not.
    #[tokio::test]
    async fn a_named_ca_is_trusted_with_its_names_and_no_other_ca() {
        let dir = tempfile::tempdir().unwrap();
        let make_ca = |cn: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = make_ca("ops CA");
        let (other_ca, _) = make_ca("another CA");
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("api.crt"), dir.path().join("api.key"));
        std::fs::write(&cert_file, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
        let (chain, key) = load_pem(&cert_file, &key_file).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            fingerprint_of_pem(&cert_file).unwrap(),
            CertFingerprint::of(leaf.der())
        );
        let addr = server(server_config(chain, key).unwrap()).await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let other_file = dir.path().join("other.pem");
        std::fs::write(&other_file, other_ca.pem()).unwrap();

        let ok = get(addr, ca_client_config(&ca_file).unwrap(), "localhost")
            .await
            .unwrap();
        assert!(ok.ends_with("hello"));
        let wrong_name = get(addr, ca_client_config(&ca_file).unwrap(), "127.0.0.1").await;
        assert!(find_rustls_error(&wrong_name.unwrap_err()).is_some());
        let wrong_ca = get(addr, ca_client_config(&other_file).unwrap(), "localhost").await;
        assert!(matches!(
            find_rustls_error(&wrong_ca.unwrap_err()),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
        assert!(ca_client_config(&key_file).is_err());
    }
}

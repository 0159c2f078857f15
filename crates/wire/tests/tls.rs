#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Pinned-key mutual TLS over real TCP connections on 127.0.0.1.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use concord_wire::tls::{self, PinStore};
use concord_wire::{IdentityKey, IdentitySigner, PublicIdentity, WireError};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Parties {
    coordinator: IdentityKey,
    module: IdentityKey,
    stranger: IdentityKey,
}

fn parties(seed: u64) -> Parties {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Parties {
        coordinator: IdentityKey::generate(&mut rng),
        module: IdentityKey::generate(&mut rng),
        stranger: IdentityKey::generate(&mut rng),
    }
}

fn pins(keys: &[PublicIdentity]) -> Arc<RwLock<HashSet<PublicIdentity>>> {
    Arc::new(RwLock::new(keys.iter().copied().collect()))
}

/// What the server saw of one connection: the client's identity and what it sent, or the
/// handshake/IO error.
type ServerOutcome = Result<(PublicIdentity, Vec<u8>), std::io::Error>;

/// Serves exactly one connection: reads "ping", answers "pong".
async fn serve_one(
    config: Arc<rustls::ServerConfig>,
) -> (u16, tokio::task::JoinHandle<ServerOutcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(tls::ALPN_H2));
        let peer = tls::peer_identity(conn.peer_certificates().unwrap()).unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok((peer, buf.to_vec()))
    });
    (port, handle)
}

/// Connects, sends "ping", reads the answer; returns the server's identity and the answer.
async fn ping(
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<(PublicIdentity, Vec<u8>), std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("any-name.invalid").unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let peer = tls::peer_identity(tls.get_ref().1.peer_certificates().unwrap()).unwrap();
    tls.write_all(b"ping").await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok((peer, answer))
}

/// The wire error a refused handshake carries, if it is one of ours.
fn wire_error(err: &std::io::Error) -> Option<&WireError> {
    let tls_err = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls_err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<WireError>()
        }
        _ => None,
    }
}

#[tokio::test]
async fn pinned_client_and_server_connect_and_see_each_other() {
    let p = parties(1);
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client = tls::client_config(&p.module, p.coordinator.public()).unwrap();

    let (server_seen, answer) = ping(port, client).await.unwrap();
    assert_eq!(server_seen, p.coordinator.public());
    assert_eq!(answer, b"pong");
    let (client_seen, request) = served.await.unwrap().unwrap();
    assert_eq!(client_seen, p.module.public());
    assert_eq!(request, b"ping");
}

#[tokio::test]
async fn server_refuses_a_client_whose_key_is_not_pinned() {
    let p = parties(2);
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    // The stranger knows the right server key but is not pinned by the server.
    let client = tls::client_config(&p.stranger, p.coordinator.public()).unwrap();

    let client_result = ping(port, client).await;
    let server_err = served.await.unwrap().unwrap_err();
    match wire_error(&server_err) {
        Some(WireError::UnpinnedPeer { fingerprint }) => {
            assert_eq!(*fingerprint, p.stranger.public().fingerprint());
        }
        other => panic!("expected UnpinnedPeer, got {other:?} ({server_err})"),
    }
    // In TLS 1.3 the client finishes first; the server's alert then ends its connection.
    assert!(
        client_result.is_err(),
        "the refused client got {client_result:?}"
    );
}

#[tokio::test]
async fn client_refuses_a_server_that_is_not_the_pinned_one() {
    let p = parties(3);
    // The stranger poses as coordinator and would even accept the module.
    let server = tls::server_config(&p.stranger, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client = tls::client_config(&p.module, p.coordinator.public()).unwrap();

    let client_err = ping(port, client).await.unwrap_err();
    match wire_error(&client_err) {
        Some(WireError::UnpinnedPeer { fingerprint }) => {
            assert_eq!(*fingerprint, p.stranger.public().fingerprint());
        }
        other => panic!("expected UnpinnedPeer, got {other:?} ({client_err})"),
    }
    assert!(served.await.unwrap().is_err());
}

/// A client that accepts any server: stands in for an attacker who skips our verifier.
#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn attacker_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
}

/// Runs one connection of an attacker client against a pinned server; returns both results.
async fn attack(
    p: &Parties,
    mut client: ClientConfig,
) -> (
    Result<(PublicIdentity, Vec<u8>), std::io::Error>,
    ServerOutcome,
) {
    client.alpn_protocols = vec![b"h2".to_vec()];
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client_result = ping(port, Arc::new(client)).await;
    (client_result, served.await.unwrap())
}

#[tokio::test]
async fn server_refuses_a_client_without_a_certificate() {
    let p = parties(4);
    let (client, server) = attack(
        &p,
        attacker_client(&[&rustls::version::TLS13]).with_no_client_auth(),
    )
    .await;
    let err = server.unwrap_err();
    let tls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(tls_err, Some(rustls::Error::NoCertificatesPresented)),
        "{err}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn server_refuses_a_client_certificate_with_a_non_ed25519_key() {
    let p = parties(5);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["module".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let client = attacker_client(&[&rustls::version::TLS13])
        .with_client_auth_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    let (client, server) = attack(&p, client).await;
    let err = server.unwrap_err();
    // The server offers Ed25519 only, so the client cannot even sign; either way it is out.
    assert!(client.is_err(), "{err}");
}

#[tokio::test]
async fn server_refuses_tls12() {
    let p = parties(6);
    let (cert, key) = tls::self_signed_certificate(&p.module, "module").unwrap();
    let client = attacker_client(&[&rustls::version::TLS12])
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    let (client, server) = attack(&p, client).await;
    let err = server.unwrap_err();
    let tls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(tls_err, Some(rustls::Error::PeerIncompatible(_))),
        "{err}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn a_pinned_key_presented_in_a_certificate_is_still_refused_without_the_secret() {
    // An attacker copies the module's certificate (public) but signs the handshake with its
    // own key: the TLS 1.3 CertificateVerify check must refuse it.
    let p = parties(7);
    let (module_cert, _) = tls::self_signed_certificate(&p.module, "module").unwrap();
    let (_, stranger_key) = tls::self_signed_certificate(&p.stranger, "module").unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&stranger_key).unwrap();
    // CertifiedKey::new does not check that key and certificate match: a forger's view.
    let forged = rustls::sign::CertifiedKey::new(vec![module_cert], signer);
    let client = attacker_client(&[&rustls::version::TLS13])
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(forged)));
    let (client, server) = attack(&p, client).await;
    let err = server.unwrap_err();
    let tls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            tls_err,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature
            ))
        ),
        "{err}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn enrollment_and_revocation_take_effect_on_the_next_connection() {
    let p = parties(8);
    let store = pins(&[]);
    let server = tls::server_config(&p.coordinator, store.clone() as Arc<dyn PinStore>).unwrap();
    let client = tls::client_config(&p.module, p.coordinator.public()).unwrap();

    let (port, served) = serve_one(server.clone()).await;
    assert!(ping(port, client.clone()).await.is_err());
    assert!(served.await.unwrap().is_err());

    store.write().unwrap().insert(p.module.public());
    let (port, served) = serve_one(server.clone()).await;
    assert_eq!(ping(port, client.clone()).await.unwrap().1, b"pong");
    served.await.unwrap().unwrap();

    store.write().unwrap().remove(&p.module.public());
    let (port, served) = serve_one(server).await;
    assert!(ping(port, client).await.is_err());
    assert!(served.await.unwrap().is_err());
}

/// An identity signer outside the key's own type, as a module whose identity key lives in an
/// HSM has: it signs through `sign_with` (which may be another key, or fail), and counts.
struct Remote {
    public: PublicIdentity,
    sign_with: Arc<IdentityKey>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Remote {
    fn new(public: PublicIdentity, sign_with: IdentityKey) -> Remote {
        Remote {
            public,
            sign_with: Arc::new(sign_with),
            fail: Default::default(),
            calls: Default::default(),
        }
    }
}

impl IdentitySigner for Remote {
    fn public(&self) -> PublicIdentity {
        self.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<[u8; 64], WireError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(WireError::SignerFailed("the token is unreachable".into()));
        }
        Ok(self.sign_with.sign(msg))
    }

    fn handle(&self) -> Arc<dyn IdentitySigner> {
        Arc::new(Remote {
            public: self.public,
            sign_with: self.sign_with.clone(),
            fail: self.fail.clone(),
            calls: self.calls.clone(),
        })
    }
}

fn same_key(k: &IdentityKey) -> IdentityKey {
    IdentityKey::from_seed(&k.to_seed())
}

#[tokio::test]
async fn a_module_whose_key_signs_elsewhere_authenticates_through_its_signer() {
    let p = parties(20);
    let signer = Remote::new(p.module.public(), same_key(&p.module));
    let calls = signer.calls.clone();
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client = tls::client_config(&signer, p.coordinator.public()).unwrap();
    let at_config = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        at_config, 1,
        "the certificate is signed once, by the signer"
    );

    let (_, answer) = ping(port, client).await.unwrap();
    assert_eq!(answer, b"pong");
    let (seen, _) = served.await.unwrap().unwrap();
    assert_eq!(seen, p.module.public());
    // The handshake's CertificateVerify was signed by the signer too.
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        at_config + 1
    );
}

#[tokio::test]
async fn a_signer_that_fails_mid_handshake_ends_it_with_an_error() {
    let p = parties(21);
    let signer = Remote::new(p.module.public(), same_key(&p.module));
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client = tls::client_config(&signer, p.coordinator.public()).unwrap();
    // The token goes away after the configuration was made.
    signer.fail.store(true, std::sync::atomic::Ordering::SeqCst);

    let err = ping(port, client).await.unwrap_err();
    assert!(
        err.to_string().contains("the token is unreachable"),
        "the client's error names the signer's failure: {err}"
    );
    assert!(served.await.unwrap().is_err());
}

#[tokio::test]
async fn a_signer_whose_token_holds_another_key_is_refused_by_the_server() {
    let p = parties(22);
    // Claims the module's public key, signs with the stranger's secret.
    let signer = Remote::new(p.module.public(), same_key(&p.stranger));
    let server = tls::server_config(&p.coordinator, pins(&[p.module.public()])).unwrap();
    let (port, served) = serve_one(server).await;
    let client = tls::client_config(&signer, p.coordinator.public()).unwrap();

    let client_result = ping(port, client).await;
    assert!(
        served.await.unwrap().is_err(),
        "the server accepted a forged handshake"
    );
    assert!(client_result.is_err());
}

#[test]
fn a_sealed_message_is_not_made_when_the_signer_fails() {
    let p = parties(23);
    let signer = Remote::new(p.module.public(), same_key(&p.module));
    signer.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let recipient = concord_wire::SealingKey::generate(&mut ChaCha20Rng::seed_from_u64(5));
    let err = concord_wire::seal::seal(
        &signer,
        0,
        &recipient.public(),
        1,
        &[7u8; 32],
        b"round 1",
        &mut ChaCha20Rng::seed_from_u64(6),
    )
    .unwrap_err();
    assert!(matches!(err, WireError::SignerFailed(_)), "{err}");
    // Working again, the same signer seals a message the recipient opens.
    signer
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let sealed = concord_wire::seal::seal(
        &signer,
        0,
        &recipient.public(),
        1,
        &[7u8; 32],
        b"round 1",
        &mut ChaCha20Rng::seed_from_u64(6),
    )
    .unwrap();
    let opened =
        concord_wire::seal::open(&recipient, 1, &p.module.public(), 0, &[7u8; 32], &sealed)
            .unwrap();
    assert_eq!(&opened[..], b"round 1");
}

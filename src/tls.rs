//! The process-wide TLS crypto provider. rustls picks one by itself only when exactly one
//! provider feature is compiled in; which features are on depends on the whole dependency
//! graph, so the binary installs ring explicitly before any TLS client (the Kubernetes client)
//! is built.

/// Installs rustls' ring provider as the process default. Idempotent: a provider already
/// installed (by an earlier call, or a test harness) is kept.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_and_a_second_call_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}

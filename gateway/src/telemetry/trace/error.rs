//! Why tracing could not start.

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("traces.headers.{name}: {source}")]
    Header {
        name: String,
        source: crate::secrets::CredentialError,
    },
    #[error("traces.headers.{0}: the secret is not a valid HTTP header value")]
    HeaderValue(String),
    #[error("traces.ca_file: {0}")]
    CaFile(crate::upstream::CaFileError),
    #[error("traces: cannot build the collector's client: {0}")]
    Client(crate::upstream::UpstreamError),
    #[error("traces: cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("traces: cannot start the export thread: {0}")]
    Thread(std::io::Error),
}

//! Schema text Warden adds to a policy directory's schema without a file: the declarations of
//! the actions of the REST connectors the routes use.

use std::path::PathBuf;

/// Schema text (Cedar's schema syntax, or its JSON syntax when it starts with `{`) and where it
/// came from, for errors: the connector file (`connectors/github.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFragment {
    /// What the text was made from.
    pub origin: PathBuf,
    /// The declarations.
    pub text: String,
}

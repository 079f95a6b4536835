//! The approved definition of a pinned item, for what its server answers about it: the
//! description of a `prompts/get` result is the approved prompt's
//! (`proxy/mcp/served_content.rs`).

use serde_json::Value;

use super::Pins;

impl Pins {
    /// The approved definition of `tool` on `server` (for a prompt, `tool` is its pinned
    /// name, `prompt:<name>`): its pinned fields as approved, from memory; `None` when nothing
    /// is approved for it.
    pub fn approved_definition(&self, server: &str, tool: &str) -> Option<Value> {
        let entry = self.entry(server, tool)?;
        let approved = entry.approved.as_ref()?;
        serde_json::from_str(&approved.json).ok()
    }
}

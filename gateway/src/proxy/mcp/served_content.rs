//! Observe, for what a server answers for the model to read: a `prompts/get` result reaches
//! the agent with the description of the prompt as it was approved (a server can list an
//! innocent prompt and describe it otherwise when asked for it), and a `prompts/get`,
//! `resources/read` or `tools/call` result is read by the detectors of
//! `inspect::server_content`. A replaced
//! description (the finding [`DESCRIPTION_NOT_PINNED`]) and what the detectors find join the
//! request's outcome record and Warden's log, by detector and location, never the text.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::action::Finding;
use crate::inspect::InspectConfig;
use crate::inspect::server_content::{
    inspect_prompt_result, inspect_resource_result, inspect_tool_result,
};
use crate::pins::{ItemKind, Pins};
use crate::text::{FIELD_MAX, Quoted, bounded};

/// The finding of a `prompts/get` result whose description is not the approved prompt's:
/// the agent got the approved one instead.
pub(super) const DESCRIPTION_NOT_PINNED: &str = "prompt_description_not_pinned";

/// Where [`DESCRIPTION_NOT_PINNED`] is found.
const DESCRIPTION: &str = "result.description";

/// A request whose answer is read before the agent gets it.
pub(super) struct Served {
    /// Tool pinning, when on.
    pins: Option<Arc<Pins>>,
    /// Which content detectors run (`inspect:`).
    inspect: InspectConfig,
    server: Arc<str>,
    item: Item,
}

/// What the request asks for, by the server's own name for it.
enum Item {
    /// `prompts/get` of the prompt of this name.
    Prompt(String),
    /// `resources/read` of the resource at this URI.
    Resource(String),
    /// `tools/call` of the tool of this name.
    Tool(String),
}

impl Served {
    /// What `method` with `params` (as sent to `server`, under the server's own names) asks
    /// for that its answer is read for: a `prompts/get`, a `resources/read` or a `tools/call`;
    /// `None` for any other request. Its answer is read with `pins` and the detectors `inspect` enables.
    pub(super) fn of(
        (pins, inspect): (Option<Arc<Pins>>, &InspectConfig),
        method: &str,
        server: &Arc<str>,
        params: &Map<String, Value>,
    ) -> Option<Served> {
        let own = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let item = match method {
            "prompts/get" => Item::Prompt(own("name")?),
            "resources/read" => Item::Resource(own("uri")?),
            "tools/call" => Item::Tool(own("name")?),
            _ => return None,
        };
        Some(Served {
            pins,
            inspect: inspect.clone(),
            server: Arc::clone(server),
            item,
        })
    }

    /// Reads `response` (the server's JSON-RPC response, as the agent gets it): a prompt's
    /// description put back as approved, its content read; returns what was found (nothing
    /// for an error), which the caller adds to the outcome record.
    pub(super) fn read(&self, response: &mut Value) -> Vec<Finding> {
        let Some(result) = response.get_mut("result").filter(|r| r.is_object()) else {
            return Vec::new();
        };
        let (kind, name, mut findings, found) = match &self.item {
            Item::Prompt(name) => {
                let restored = self.restore_description(name, result).then(|| Finding {
                    detector: Arc::from(DESCRIPTION_NOT_PINNED),
                    location: DESCRIPTION.to_owned(),
                });
                let found = inspect_prompt_result(result, &self.inspect);
                (ItemKind::Prompt, name, Vec::from_iter(restored), found)
            }
            Item::Resource(uri) => {
                let found = inspect_resource_result(result, &self.inspect);
                (ItemKind::Resource, uri, Vec::new(), found)
            }
            Item::Tool(name) => {
                let found = inspect_tool_result(result, &self.inspect);
                (ItemKind::Tool, name, Vec::new(), found)
            }
        };
        if !found.is_empty() {
            let said: Vec<String> = found
                .iter()
                .map(|f| format!("{} at {}", f.detector, f.location))
                .collect();
            tracing::warn!(
                server = %self.server,
                kind = kind.as_str(),
                item = %Quoted::of(&kind.shown(name)),
                findings = %bounded(&said.join("; "), FIELD_MAX),
                "an MCP server's answer carries what the detectors find (hidden instructions, \
                 secrets); recorded in the request's outcome record"
            );
        }
        findings.extend(found);
        findings
    }

    /// With pinning on, makes the description of the prompt `name`'s `result` the approved
    /// prompt's (removed when the approved prompt has none, or none is approved); returns
    /// whether it differed. A result without a description is left so.
    fn restore_description(&self, name: &str, result: &mut Value) -> bool {
        let Some(pins) = &self.pins else {
            return false;
        };
        let Some(map) = result.as_object_mut() else {
            return false;
        };
        let Some(offered) = map.get("description").filter(|d| !d.is_null()) else {
            return false;
        };
        let pinned = pins.pinned_name(ItemKind::Prompt, name);
        let approved = pins
            .approved_definition(&self.server, &pinned)
            .and_then(|d| d.get("description").filter(|d| !d.is_null()).cloned());
        if approved.as_ref() == Some(offered) {
            return false;
        }
        tracing::warn!(
            server = %self.server,
            prompt = %Quoted::of(name),
            "an MCP server's prompts/get result describes the prompt otherwise than the \
             approved definition; the agent gets the approved description (`warden tools diff \
             SERVER 'prompt:NAME'` shows the approved one)"
        );
        match approved {
            Some(approved) => map.insert("description".to_owned(), approved),
            None => map.remove("description"),
        };
        true
    }
}

#[cfg(test)]
mod tests;

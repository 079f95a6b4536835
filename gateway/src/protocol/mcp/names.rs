//! Federated names: every tool and prompt an agent sees is `<server><separator><name>`, every
//! resource URI `<server>+<uri>`, so that two servers offering the same name never shadow
//! each other and Warden always knows which server a name belongs to. Server names contain
//! neither the separator nor `+` (configuration checks it), so the split is at the first one.

/// `<server><sep><name>`.
pub fn prefix(server: &str, sep: &str, name: &str) -> String {
    let mut out = String::with_capacity(server.len() + sep.len() + name.len());
    out.push_str(server);
    out.push_str(sep);
    out.push_str(name);
    out
}

/// The server and the server's own name in `name`, split at the first `sep`.
pub fn split<'a>(sep: &str, name: &'a str) -> Option<(&'a str, &'a str)> {
    let (server, rest) = name.split_once(sep)?;
    (!server.is_empty() && !rest.is_empty()).then_some((server, rest))
}

/// `<server>+<uri>`: a URI again (the server's name joins the scheme), and reversible.
pub fn prefix_uri(server: &str, uri: &str) -> String {
    let mut out = String::with_capacity(server.len() + 1 + uri.len());
    out.push_str(server);
    out.push('+');
    out.push_str(uri);
    out
}

/// The server and the server's own URI in `uri`.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let (server, rest) = uri.split_once('+')?;
    (!server.is_empty() && !rest.is_empty()).then_some((server, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_split_at_the_first_separator() {
        let full = prefix("github", "_", "create_issue");
        assert_eq!(full, "github_create_issue");
        assert_eq!(split("_", &full), Some(("github", "create_issue")));
        assert_eq!(split("_", "noseparator"), None);
        assert_eq!(split("_", "_x"), None);
    }

    #[test]
    fn openclaw_prefixing_survives() {
        // OpenClaw shows a tool of its MCP server `warden` as `warden__<name>` and strips its
        // own prefix before calling: the name Warden gets back is the one it gave.
        let ours = prefix("files", "_", "write_file");
        let openclaw = format!("warden__{ours}");
        assert_eq!(openclaw.strip_prefix("warden__"), Some(ours.as_str()));
        assert_eq!(split("_", &ours), Some(("files", "write_file")));
    }

    #[test]
    fn uris_round_trip() {
        let full = prefix_uri("everything", "test://static/resource/1");
        assert_eq!(full, "everything+test://static/resource/1");
        assert_eq!(
            split_uri(&full),
            Some(("everything", "test://static/resource/1"))
        );
        assert_eq!(
            split_uri("everything+file:///a+b"),
            Some(("everything", "file:///a+b"))
        );
    }
}

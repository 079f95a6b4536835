//! Maps key paths (`routes[2].upstream`) to the line they stand on in a YAML file, so that
//! errors found after parsing still point at the file and line.

use serde_saphyr::granit_parser::{Event, Parser};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// Where a configuration came from: its file and the line of each key, so that a mistake
/// found after parsing (or in a file the configuration names) still points at its key.
#[derive(Debug, Default, Clone)]
pub struct Source {
    file: Option<PathBuf>,
    lines: LineIndex,
}

impl Source {
    /// The source of configuration `text`, read from `file` (`None` for the defaults).
    pub fn new(text: &str, file: Option<&Path>) -> Source {
        Source {
            file: file.map(Into::into),
            lines: LineIndex::new(text),
        }
    }

    /// A mistake at `key` (e.g. `listen.tls.cert`), located at the line of that key or of
    /// its nearest ancestor present in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.lines.line_of(key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The file, when the configuration was read from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Line numbers (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

enum Frame {
    /// In a mapping; `key` is the pending key (None while expecting a key).
    Map { path: String, key: Option<String> },
    /// In a sequence; `next` is the index of the next item.
    Seq { path: String, next: usize },
}

impl LineIndex {
    /// Indexes `text`; on a syntax error, indexes what came before it.
    pub fn new(text: &str) -> Self {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            // The path of the node this event opens or is, when it is a value.
            let value_path =
                |stack: &mut Vec<Frame>, lines: &mut HashMap<String, usize>| -> Option<String> {
                    match stack.last_mut() {
                        None => Some(String::new()),
                        Some(Frame::Map { path, key }) => key.take().map(|k| join_key(path, &k)),
                        Some(Frame::Seq { path, next }) => {
                            let p = format!("{path}[{next}]");
                            *next += 1;
                            lines.entry(p.clone()).or_insert(line);
                            Some(p)
                        }
                    }
                };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        lines.entry(join_key(path, &value)).or_insert(line);
                        *key = Some(value.into_owned());
                    } else {
                        value_path(&mut stack, &mut lines);
                    }
                }
                Event::MappingStart(..) => {
                    let path = value_path(&mut stack, &mut lines).unwrap_or_default();
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = value_path(&mut stack, &mut lines).unwrap_or_default();
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::Alias(..) => {
                    value_path(&mut stack, &mut lines);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        LineIndex { lines }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Where each route of `Config::routes` stands in the file. A route that does not parse is
/// left out of those validated, so the ones after it move up; every key and every reference
/// to a route that validation writes goes through [`RouteKeys::key`] to name the route where
/// it is written. Text the user wrote (a prefix, an upstream URL) is never rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteKeys {
    /// `at[j]`: the file's index of route `j` (the identity when every route parsed); empty
    /// for the embedded defaults, whose keys are their own indices.
    at: Vec<usize>,
}

impl RouteKeys {
    /// Route `j` of the ones that parsed is the file's `routes[at[j]]`.
    pub fn new(at: Vec<usize>) -> RouteKeys {
        RouteKeys { at }
    }

    /// `routes[k]`: the key of route `j` of `Config::routes`, as written in the file (`j`
    /// itself when no route was left out).
    pub fn key(&self, j: usize) -> String {
        format!("routes[{}]", self.at.get(j).copied().unwrap_or(j))
    }
}

/// `parent.key`, or `key` at the root.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_keys_and_sequence_items() {
        let text = "listen:\n  proxy: 127.0.0.1:8080\nroutes:\n  - prefix: /a\n    connector: openai\n  - prefix: /b\n    connector: nope\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of("listen.proxy"), Some(2));
        assert_eq!(idx.line_of("routes[0].connector"), Some(5));
        assert_eq!(idx.line_of("routes[1].connector"), Some(7));
        assert_eq!(idx.line_of("routes[1]"), Some(6));
        // Unknown leaf falls back to the nearest known ancestor.
        assert_eq!(idx.line_of("routes[1].credential.env"), Some(6));
    }

    #[test]
    fn a_route_key_names_the_route_where_it_stands_in_the_file() {
        let moved = RouteKeys::new(vec![1, 3]);
        assert_eq!(moved.key(0), "routes[1]");
        assert_eq!(moved.key(1), "routes[3]");
        assert_eq!(RouteKeys::default().key(2), "routes[2]");
    }

    #[test]
    fn indexes_flow_style_mappings() {
        let idx = LineIndex::new("a: 1\nroutes:\n  - { prefix: /x, connector: c }\n");
        assert_eq!(idx.line_of("routes[0].connector"), Some(3));
    }
}

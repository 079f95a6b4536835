//! Paths as messages show them. A configuration's relative paths (`data_dir: warden-data`)
//! are taken from the working directory, so the same file means another place in each
//! directory a command runs in: a message naming a relative path says which directory.

use std::fmt;
use std::path::Path;

/// Displays a path, and for a relative one the working directory it is taken from:
/// `warden-data/state.db (relative to the working directory /srv)`.
pub struct FromWorkdir<'a>(pub &'a Path);

impl fmt::Display for FromWorkdir<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())?;
        if self.0.is_relative()
            && let Ok(dir) = std::env::current_dir()
        {
            write!(f, " (relative to the working directory {})", dir.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_names_the_working_directory_it_is_taken_from() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            FromWorkdir(Path::new("warden-data/state.db")).to_string(),
            format!(
                "warden-data/state.db (relative to the working directory {})",
                cwd.display()
            )
        );
    }

    #[test]
    fn an_absolute_path_is_shown_as_it_is() {
        assert_eq!(
            FromWorkdir(Path::new("/var/lib/warden/state.db")).to_string(),
            "/var/lib/warden/state.db"
        );
    }
}

//! Config errors: each names the file, line and column, says what is wrong and how to fix it.

use std::fmt;
use std::path::PathBuf;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    /// 1-based; 0 when the problem has no place (an empty file, say).
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: {}", self.file, self.message)?;
        }
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (fix: check the path given to --config.file and its permissions)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems; a read error counts as one without a place.
    pub fn issues(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
        }
    }
}

fn render_issues(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
    match lines.len() {
        1 => lines[0].clone(),
        n => format!("{n} problems in the config:\n  {}", lines.join("\n  ")),
    }
}

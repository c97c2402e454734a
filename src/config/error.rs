//! Config errors: each names the file, line and column, says what is wrong and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

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

impl ConfigIssue {
    /// A problem at a place the parser recorded.
    pub fn at(
        file: &str,
        at: Location,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigIssue {
            file: file.to_owned(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A YAML or schema error from the parser, with its place and a fix where one can be
    /// guessed; `keys` says where the valid keys are listed.
    pub fn from_yaml(file: &str, error: &serde_saphyr::Error, keys: &str) -> Self {
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = error.to_string();
        let first_line = message.lines().next().unwrap_or_default();
        // The parser repeats the place in its message ("line 4 column 10: ..."); the issue
        // already shows it.
        let first_line = first_line.strip_prefix("error: ").unwrap_or(first_line);
        let first_line = match first_line.find(": ") {
            Some(i) if first_line.starts_with("line ") && first_line[..i].contains(" column ") => {
                &first_line[i + 2..]
            }
            _ => first_line,
        };
        let fix = if first_line.contains("unknown field `max_body_bytes`") {
            // Every `http:` takes it but an http_sd source's, whose answer has its own bound.
            "an http_sd answer is bounded by `max_response_bytes`, beside `url`: set that instead"
                .to_owned()
        } else if first_line.contains("unknown field") {
            format!("remove the key or correct its spelling; {keys}")
        } else if first_line.contains("invalid type") {
            format!("give the key a value of the type it takes; {keys}")
        } else if first_line.contains("budget") {
            // Not a syntax error: the file is larger than the parser will take at once.
            "split the file: run several exporters, each with a part of the fleet".to_owned()
        } else {
            "fix the YAML syntax at that place".to_owned()
        };
        ConfigIssue {
            file: file.to_owned(),
            line,
            column,
            message: first_line.to_owned(),
            fix,
        }
    }
}

/// The folder that relative file names inside a config file are taken from: the file's own,
/// as Prometheus does.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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

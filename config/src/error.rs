//! Configuration errors: each names the field (as a TOML path) and the reason, on one line.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        reason: String,
    },
    /// Not valid TOML, or not our schema (unknown key, wrong type).
    Syntax {
        /// The file (or `<config>` for text without a file).
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but is not acceptable.
    Invalid {
        /// The field, as a TOML path: `port[1].devargs`, `datapath.pmd_cores[0]`.
        field: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// An invalid value in `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The field the error is about, when it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, reason } => write!(f, "{}: cannot read: {reason}", path.display()),
            Self::Syntax { path, line, column, message } => {
                write!(f, "{}:{line}:{column}: {message}", path.display())
            }
            Self::Invalid { field, reason } => write!(f, "{field}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

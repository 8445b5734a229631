//! Instruction flags (BuildKit `BFlags`): `--name`, `--name=value`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    String,
    Strings,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Value {
    /// Last value of a bool or string flag.
    pub value: Option<String>,
    /// Every value of a repeatable flag.
    pub values: Vec<String>,
    pub used: bool,
}

/// The flags an instruction accepts, filled by [`Flags::parse`].
#[derive(Debug, Default)]
pub(crate) struct Flags {
    defs: Vec<(&'static str, Kind)>,
    vals: BTreeMap<&'static str, Value>,
}

impl Flags {
    pub(crate) fn new(defs: &[(&'static str, Kind)]) -> Self {
        Flags {
            defs: defs.to_vec(),
            vals: BTreeMap::new(),
        }
    }

    /// Check `args` (the `--x=y` words of the node) against the definitions.
    pub(crate) fn parse(&mut self, args: &[String]) -> Result<(), String> {
        for arg in args {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if body.is_empty() {
                return Ok(());
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(def_name, kind)) = self.defs.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: {name}"));
            };
            let entry = self.vals.entry(def_name).or_default();
            if entry.used && kind != Kind::Strings {
                return Err(format!("duplicate flag specified: {name}"));
            }
            entry.used = true;
            match kind {
                Kind::Bool => {
                    let v = match value {
                        None => "true".to_string(),
                        Some("") => return Err(format!("missing a value on flag: {name}")),
                        Some(v) => {
                            let lower = v.to_lowercase();
                            if lower != "true" && lower != "false" {
                                return Err(format!(
                                    "expecting boolean value for flag {name}, not: {v}"
                                ));
                            }
                            lower
                        }
                    };
                    entry.value = Some(v);
                }
                Kind::String => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: {name}"));
                    };
                    entry.value = Some(v.to_string());
                }
                Kind::Strings => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: {name}"));
                    };
                    entry.values.push(v.to_string());
                }
            }
        }
        Ok(())
    }

    /// A string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.vals.get(name).and_then(|v| v.value.clone())
    }

    /// A bool flag (false when absent).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    /// A bool flag, `None` when absent.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// All values of a repeatable flag.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.vals
            .get(name)
            .map(|v| v.values.clone())
            .unwrap_or_default()
    }
}

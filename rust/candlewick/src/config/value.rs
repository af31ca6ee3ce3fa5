//! Field values as they arrive from a dynamic caller (Python keyword arguments, JSON files), and
//! the macro that gives a config struct its one list of fields: each field's type and default
//! are written once, in the struct, and `get`/`set` by name convert through `FieldValue` with
//! errors that name the field (wrong type: `Error::WrongType`; out of range:
//! `Error::InvalidArgument`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A dynamically typed value: what Python or JSON hands the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The Python name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Map(_) => "dict",
        }
    }

    /// From JSON (config.json, generation_config.json).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

fn wrong(field: &str, want: &str, got: &Value) -> Error {
    Error::WrongType(format!("{field} must be {want}, got {}", got.kind()))
}

/// A field type that converts from and to `Value`.
pub trait FieldValue: Sized {
    fn from_value(v: Value, field: &str) -> Result<Self>;
    fn to_value(&self) -> Value;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn from_value(v: Value, field: &str) -> Result<Self> {
                match v {
                    Value::Int(i) if i < 0 => Err(Error::InvalidArgument(format!(
                        "{field} must be >= 0, got {i}"
                    ))),
                    Value::Int(i) => <$t>::try_from(i).map_err(|_| {
                        Error::InvalidArgument(format!("{field} is too large: {i}"))
                    }),
                    other => Err(wrong(field, "an int", &other)),
                }
            }
            fn to_value(&self) -> Value {
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
unsigned!(usize, u32, u64);

impl FieldValue for f64 {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::Int(i) => Ok(i as f64),
            Value::Float(x) => Ok(x),
            other => Err(wrong(field, "a number", &other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
}

impl FieldValue for bool {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::Bool(b) => Ok(b),
            other => Err(wrong(field, "a bool", &other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FieldValue for String {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::Str(s) => Ok(s),
            other => Err(wrong(field, "a str", &other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
}

impl<T: FieldValue> FieldValue for Option<T> {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::None => Ok(None),
            other => T::from_value(other, field).map(Some),
        }
    }
    fn to_value(&self) -> Value {
        match self {
            Some(x) => x.to_value(),
            None => Value::None,
        }
    }
}

/// Strings: a list of them, one string, or None (no strings).
impl FieldValue for Vec<String> {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::None => Ok(Vec::new()),
            Value::Str(s) => Ok(vec![s]),
            Value::List(items) => items
                .into_iter()
                .map(|x| match x {
                    Value::Str(s) => Ok(s),
                    other => Err(wrong(field, "a string or a list of strings", &other)),
                })
                .collect(),
            other => Err(wrong(field, "a string or a list of strings", &other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(|s| Value::Str(s.clone())).collect())
    }
}

/// Token ids: a list of them, or None (no ids).
impl FieldValue for Vec<u32> {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        match v {
            Value::None => Ok(Vec::new()),
            Value::List(items) => items
                .into_iter()
                .map(|x| u32::from_value(x, field))
                .collect(),
            other => Err(wrong(field, "a list of ints", &other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(|i| Value::Int(*i as i64)).collect())
    }
}

/// Token id -> number (logit_bias): int keys, or strings holding ints (JSON).
impl FieldValue for BTreeMap<u32, f64> {
    fn from_value(v: Value, field: &str) -> Result<Self> {
        let entries = match v {
            Value::None => return Ok(BTreeMap::new()),
            Value::Map(e) => e,
            other => return Err(wrong(field, "a dict of token id -> number", &other)),
        };
        let key_field = format!("{field} key");
        entries
            .into_iter()
            .map(|(k, x)| {
                let k = match k {
                    Value::Str(s) => match s.trim().parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => Value::Str(s),
                    },
                    other => other,
                };
                Ok((
                    u32::from_value(k, &key_field)?,
                    f64::from_value(x, &format!("{field} value"))?,
                ))
            })
            .collect()
    }
    fn to_value(&self) -> Value {
        Value::Map(
            self.iter()
                .map(|(k, v)| (Value::Int(*k as i64), Value::Float(*v)))
                .collect(),
        )
    }
}

/// An enum of named options (`choices!` implements it): converts from and to its name.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    const CHOICES: &'static [(&'static str, Self)];

    fn name(&self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, c)| c == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    fn parse(s: &str, field: &str) -> Result<Self> {
        Self::CHOICES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{field} must be one of {}; got '{s}'",
                    Self::CHOICES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// `choices!(Norm { "layer_norm" => LayerNorm, "rms_norm" => RmsNorm })`: the enum's names, once.
macro_rules! choices {
    ($t:ident { $($name:literal => $variant:ident),* $(,)? }) => {
        impl $crate::config::value::Choice for $t {
            const CHOICES: &'static [(&'static str, Self)] = &[$(($name, $t::$variant)),*];
        }
        impl $crate::config::value::FieldValue for $t {
            fn from_value(v: $crate::config::value::Value, field: &str) -> $crate::error::Result<Self> {
                use $crate::config::value::Choice;
                match v {
                    $crate::config::value::Value::Str(s) => Self::parse(&s, field),
                    other => Err($crate::error::Error::WrongType(format!(
                        "{field} must be a str, got {}", other.kind()
                    ))),
                }
            }
            fn to_value(&self) -> $crate::config::value::Value {
                use $crate::config::value::Choice;
                $crate::config::value::Value::Str(self.name().into())
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                use $crate::config::value::Choice;
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use choices;

/// A config struct whose fields are listed once: the struct, its `Default`, and by-name access
/// (`get`, `set`, `with`; the struct provides `validate`).
///
/// `fields! { pub struct GenerationConfig ("", "unknown generation parameter") { pub top_k: usize = 0, ... } }`
/// The first string prefixes field names in errors ("ModelConfig." gives "ModelConfig.top_k must
/// be ..."), the second starts the error for a name that is no field.
macro_rules! fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($prefix:literal, $unknown:literal) {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// The field names, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// A field's value by name (None: no such field).
            pub fn get(&self, name: &str) -> Option<$crate::config::value::Value> {
                use $crate::config::value::FieldValue;
                match name {
                    $( stringify!($field) => Some(self.$field.to_value()), )*
                    _ => None,
                }
            }

            /// Set a field by name, converting and checking its type (not the config as a
            /// whole: see `validate`).
            pub fn set(&mut self, name: &str, v: $crate::config::value::Value) -> $crate::error::Result<()> {
                use $crate::config::value::FieldValue;
                match name {
                    $( stringify!($field) => {
                        self.$field = FieldValue::from_value(v, concat!($prefix, stringify!($field)))?;
                        Ok(())
                    } )*
                    _ => Err($crate::error::Error::WrongType(format!("{}: '{name}'", $unknown))),
                }
            }

            /// This config with some fields changed by name, then validated as a whole.
            pub fn with(&self, changes: Vec<(String, $crate::config::value::Value)>) -> $crate::error::Result<Self> {
                let mut c = self.clone();
                for (k, v) in changes {
                    c.set(&k, v)?;
                }
                c.validate()?;
                Ok(c)
            }

            /// Every field with its value, in declaration order.
            pub fn values(&self) -> Vec<(&'static str, $crate::config::value::Value)> {
                use $crate::config::value::FieldValue;
                vec![$( (stringify!($field), self.$field.to_value()), )*]
            }
        }
    };
}
pub(crate) use fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_name_the_field() {
        assert_eq!(usize::from_value(Value::Int(3), "n").unwrap(), 3);
        let e = usize::from_value(Value::Int(-1), "n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "n must be >= 0, got -1");
        assert!(matches!(
            usize::from_value(Value::Bool(true), "n"),
            Err(Error::WrongType(_))
        ));
        assert!(matches!(
            usize::from_value(Value::Float(2.5), "n"),
            Err(Error::WrongType(_))
        ));
        assert_eq!(f64::from_value(Value::Int(2), "x").unwrap(), 2.0);
        assert!(matches!(
            f64::from_value(Value::Str("hot".into()), "x"),
            Err(Error::WrongType(_))
        ));
        assert_eq!(
            Vec::<String>::from_value(Value::Str("\n".into()), "stop").unwrap(),
            vec!["\n".to_string()]
        );
        let m = BTreeMap::<u32, f64>::from_value(
            Value::Map(vec![(Value::Str("5".into()), Value::Float(-1.0))]),
            "logit_bias",
        )
        .unwrap();
        assert_eq!(m.get(&5), Some(&-1.0));
        assert!(Option::<u64>::from_value(Value::None, "seed")
            .unwrap()
            .is_none());
    }
}

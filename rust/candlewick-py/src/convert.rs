//! Python objects <-> the engine's dynamic `Value` (what config fields are set from and read as).

use candlewick::config::Value;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

/// A Python value as the engine takes it: None, bool, int, float, str, and lists, tuples, dicts
/// and numpy arrays or scalars of those.
pub fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    nested(obj, 0)
}

/// Lists and dicts nested deeper than this are refused (a recursion without a bound would
/// overflow the native stack on a hostile value).
const MAX_DEPTH: usize = 32;

fn nested(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let to_value = |x: &Bound<'_, PyAny>| nested(x, depth + 1);
    if obj.is_none() {
        return Ok(Value::None);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Value::Int).map_err(|_| {
            PyValueError::new_err(format!("{obj} is out of range (a 64-bit integer)"))
        });
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract()?));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Value::Str(s.extract::<String>()?));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| Ok((to_value(&k)?, to_value(&v)?)))
            .collect::<PyResult<_>>()
            .map(Value::Map);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj
            .try_iter()?
            .map(|x| to_value(&x?))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    // numpy arrays and scalars (np.int64, np.float32, ...)
    if obj.hasattr("tolist")? && obj.hasattr("dtype")? {
        return nested(&obj.call_method0("tolist")?, depth);
    }
    Err(PyTypeError::new_err(format!(
        "unsupported value of type {}",
        obj.get_type().name()?
    )))
}

pub fn to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::None => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::Int(i) => i.into_py_any(py)?,
        Value::Float(f) => f.into_py_any(py)?,
        Value::Str(s) => s.into_py_any(py)?,
        Value::List(items) => PyList::new(
            py,
            items
                .iter()
                .map(|x| to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any()
        .unbind(),
        Value::Map(entries) => {
            let d = PyDict::new(py);
            for (k, x) in entries {
                d.set_item(to_py(py, k)?, to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// Keyword arguments as (field name, value) changes.
pub fn changes(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Value)>> {
    let Some(kw) = kwargs else {
        return Ok(Vec::new());
    };
    kw.iter()
        .map(|(k, v)| {
            let k = k.extract::<String>()?;
            let v = to_value(&v).map_err(|e| named(kw.py(), &k, e))?;
            Ok((k, v))
        })
        .collect()
}

/// The error of converting argument `name`, with the name in front.
fn named(py: Python<'_>, name: &str, e: PyErr) -> PyErr {
    let msg = format!("{name}: {}", e.value(py));
    if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(msg)
    } else {
        PyValueError::new_err(msg)
    }
}

/// `dataclasses.Field`s for `names`, so that `dataclasses.replace`, `fields` and `asdict` work on
/// the config classes as they did on the dataclasses these classes replace.
pub fn dataclass_fields(py: Python<'_>, names: &[&str]) -> PyResult<Py<PyDict>> {
    let dc = py.import("dataclasses")?;
    let kind = dc.getattr("_FIELD")?;
    let d = PyDict::new(py);
    for &n in names {
        let f = dc.getattr("field")?.call0()?;
        f.setattr("name", n)?;
        f.setattr("_field_type", &kind)?;
        d.set_item(n, f)?;
    }
    Ok(d.unbind())
}

/// `Name(a=1, b='x')` from (field, value) pairs.
pub fn repr(py: Python<'_>, class: &str, values: &[(&str, Value)]) -> PyResult<String> {
    let parts = values
        .iter()
        .map(|(k, v)| Ok(format!("{k}={}", to_py(py, v)?.bind(py).repr()?)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(format!("{class}({})", parts.join(", ")))
}

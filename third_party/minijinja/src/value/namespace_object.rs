use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind};
use crate::value::{Enumerator, Object, Value, ValueKind};

/// This object exists for the `namespace` function.
///
/// It's special in that it behaves like a dictionary in many ways but it's the only
/// object that can be used with `{% set %}` assignments.  This is used internally
/// in the vm via downcasting.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    data: Mutex<BTreeMap<Arc<str>, Value>>,
}

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.data.lock().unwrap().get(some!(key.as_str())).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let data = self.data.lock().unwrap();
        let keys = data.keys().cloned().map(Value::from);
        Enumerator::Values(keys.collect())
    }
}

/// How many values `set_value` looks through for the namespace itself before refusing.
const MAX_CYCLE_WALK: usize = 1_000_000;

impl Namespace {
    /// Set `key` to `value`, unless `value` holds this namespace (directly, or through lists,
    /// maps and other namespaces): a namespace inside itself is a cycle that printing, comparing
    /// or serialising it would follow until the stack overflowed (candlewick's patch).
    pub(crate) fn set_value(&self, key: &str, value: Value) -> Result<(), Error> {
        let mut budget = MAX_CYCLE_WALK;
        if ok!(reaches(&value, self as *const Namespace, &mut budget)) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "cannot assign a namespace into itself",
            ));
        }
        self.insert(key, value);
        Ok(())
    }

    /// Set `key` in a namespace being made (which nothing can hold yet).
    pub(crate) fn insert(&self, key: &str, value: Value) {
        self.data.lock().unwrap().insert(key.into(), value);
    }
}

/// Whether `target` can be reached from `v`; errs once `budget` values have been looked at.
fn reaches(v: &Value, target: *const Namespace, budget: &mut usize) -> Result<bool, Error> {
    if *budget == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "value too large to assign into a namespace",
        ));
    }
    *budget -= 1;
    if let Some(ns) = v.downcast_object_ref::<Namespace>() {
        if std::ptr::eq(ns, target) {
            return Ok(true);
        }
        let values: Vec<Value> = ns.data.lock().unwrap().values().cloned().collect();
        for x in &values {
            if ok!(reaches(x, target, budget)) {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    match v.kind() {
        // (one-shot iterables are left alone: walking one would use it up)
        ValueKind::Seq => {
            if let Ok(items) = v.try_iter() {
                for x in items {
                    if ok!(reaches(&x, target, budget)) {
                        return Ok(true);
                    }
                }
            }
        }
        ValueKind::Map => {
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    if let Some(x) = v.get_item_opt(&k) {
                        if ok!(reaches(&x, target, budget)) {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(false)
}

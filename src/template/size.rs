//! How big a value a template may print, serialize or hand back: a walk that refuses values
//! too deep or too large before anything recurses into them or copies them.
//!
//! Fuel bounds the instructions of a render, but a few instructions can build what no render
//! could afford to walk: a list repeated lazily (`[[0] * 100000000] * 100000000` is 10^16
//! items and costs no fuel until visited), or a value wrapped in itself in a loop (`{% set
//! ns.v = [ns.v] %}`), whose printing or serialization recurses once per level and overflows
//! the stack, which aborts the whole process.

use minijinja::value::{Value, ValueIter, ValueKind};

/// Deepest nesting a value may have where it leaves a template. A webhook body is at most 64
/// levels deep (`BodyLimits`), and `fromjson` stops at 128; deeper only comes from a template
/// building it.
pub const MAX_VALUE_DEPTH: usize = 128;

/// Most items (list entries, map entries and scalars, counted through every level) a value may
/// hold where it leaves a template: as many as the fuel of a render, which could not print
/// more than that anyway.
pub const MAX_VALUE_ITEMS: usize = super::FUEL_PER_RENDER as usize;

/// Why a value cannot leave a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "the value is nested deeper than {MAX_VALUE_DEPTH} levels (built by wrapping a value in itself?)"
    )]
    Deep,
    #[error(
        "the value has more than {MAX_VALUE_ITEMS} items (a list repeated or concatenated too often?)"
    )]
    Large,
}

impl From<TooLarge> for minijinja::Error {
    fn from(err: TooLarge) -> Self {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, err.to_string())
    }
}

/// The entries still to visit of one list or map.
enum Frame {
    Items(ValueIter),
    /// A map's keys, and the map to look each value up in.
    Entries(Value, ValueIter),
}

impl Frame {
    fn of(value: &Value) -> Option<Self> {
        match value.kind() {
            ValueKind::Seq | ValueKind::Iterable => value.try_iter().ok().map(Frame::Items),
            ValueKind::Map => value
                .try_iter()
                .ok()
                .map(|keys| Frame::Entries(value.clone(), keys)),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Value> {
        match self {
            Frame::Items(items) => items.next(),
            Frame::Entries(map, keys) => {
                let key = keys.next()?;
                Some(map.get_item(&key).unwrap_or_default())
            }
        }
    }
}

/// Whether printing or serializing `value` walks into it.
pub fn is_container(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    )
}

/// Walks `value` with an explicit stack, stopping at the first level or item too many.
pub fn check(value: &Value) -> Result<(), TooLarge> {
    let mut items = 1usize;
    let mut stack: Vec<Frame> = Frame::of(value).into_iter().collect();
    while let Some(frame) = stack.last_mut() {
        let Some(child) = frame.next() else {
            stack.pop();
            continue;
        };
        items += 1;
        if items > MAX_VALUE_ITEMS {
            return Err(TooLarge::Large);
        }
        if let Some(frame) = Frame::of(&child) {
            if stack.len() >= MAX_VALUE_DEPTH {
                return Err(TooLarge::Deep);
            }
            stack.push(frame);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut value = Value::from(1);
        for _ in 0..depth {
            value = Value::from(vec![value]);
        }
        value
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(check(&nested(MAX_VALUE_DEPTH)), Ok(()));
        assert_eq!(check(&nested(MAX_VALUE_DEPTH + 1)), Err(TooLarge::Deep));
        let mut map = Value::from(1);
        for _ in 0..=MAX_VALUE_DEPTH {
            map = Value::from_iter([("k", map)]);
        }
        assert_eq!(check(&map), Err(TooLarge::Deep));
        assert_eq!(check(&Value::from("text")), Ok(()));
    }

    #[test]
    fn items_count_through_every_level() {
        let wide: Vec<Value> = (0..MAX_VALUE_ITEMS - 1).map(Value::from).collect();
        assert_eq!(check(&Value::from(wide)), Ok(()));
        let wider: Vec<Value> = (0..MAX_VALUE_ITEMS).map(Value::from).collect();
        assert_eq!(check(&Value::from(wider)), Err(TooLarge::Large));
        let row = Value::from((0..1000).collect::<Vec<i64>>());
        let rows = Value::from(vec![row; 1000]);
        assert_eq!(check(&rows), Err(TooLarge::Large));
    }
}

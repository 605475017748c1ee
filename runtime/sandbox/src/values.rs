//! JSON ↔ WIT values, JSON Schemas of WIT types, and the ledger's canonical values.
//!
//! One scheme, used everywhere an agent's JSON meets a capability's WIT signature:
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | `true` / `false` |
//! | `u8` … `u64`, `s8` … `s64` | an integer number, range-checked |
//! | `f32`, `f64` | a number; `"NaN"`, `"Infinity"`, `"-Infinity"` for the non-finite values |
//! | `char` | a string of exactly one character |
//! | `string` | a string |
//! | `list<T>` | an array |
//! | `record` | an object keyed by field name (an absent `option` field is `none`) |
//! | `tuple<…>` | an array of the tuple's length |
//! | `variant` | `{"<case>": <payload>}`; a case without payload is `{"<case>": null}` or `"<case>"` |
//! | `enum` | the case name as a string |
//! | `option<T>` | `null` or the value; `option<option<T>>` nests as `{"some": …}` |
//! | `result<T, E>` | `{"ok": <T or null>}` or `{"err": <E or null>}` |
//! | `flags` | an array of the names that are set |
//!
//! Resources, futures, streams and maps are refused with a clear error.

use serde_json::{Map, Value as Json, json};
use wasmtime::component::{Type, Val};

use femtoclaw_ledger::Value;

/// A JSON value does not fit a WIT type. `path` names the parameter and the position in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument `{path}`: expected {expected}, found {found}")]
pub struct ValueError {
    /// Where: the parameter name, then fields, indexes and cases (`person.tags[2]`).
    pub path: String,
    /// What the WIT type wants, in words.
    pub expected: String,
    /// What the JSON held.
    pub found: String,
}

/// A WIT type that cannot cross the JSON boundary (resources and async types).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` has type {kind}, which capabilities cannot take or return through JSON yet")]
pub struct UnsupportedType {
    /// Where the type occurs.
    pub path: String,
    /// The kind of type, e.g. `a resource`.
    pub kind: &'static str,
}

fn unsupported(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("a resource"),
        Type::Future(_) => Some("a future"),
        Type::Stream(_) => Some("a stream"),
        Type::ErrorContext => Some("an error-context"),
        Type::Map(_) => Some("a map"),
        Type::FixedLengthList(_) => Some("a fixed-length list"),
        _ => None,
    }
}

/// Refuses a type that contains a resource or another type JSON cannot carry.
pub fn check_supported(ty: &Type, path: &str) -> Result<(), UnsupportedType> {
    if let Some(kind) = unsupported(ty) {
        return Err(UnsupportedType {
            path: path.to_owned(),
            kind,
        });
    }
    match ty {
        Type::List(l) => check_supported(&l.ty(), &format!("{path}[]")),
        Type::Option(o) => check_supported(&o.ty(), path),
        Type::Record(r) => r
            .fields()
            .try_for_each(|f| check_supported(&f.ty, &format!("{path}.{}", f.name))),
        Type::Tuple(t) => t
            .types()
            .enumerate()
            .try_for_each(|(i, t)| check_supported(&t, &format!("{path}[{i}]"))),
        Type::Variant(v) => v.cases().try_for_each(|c| match &c.ty {
            Some(t) => check_supported(t, &format!("{path}.{}", c.name)),
            None => Ok(()),
        }),
        Type::Result(r) => [r.ok(), r.err()]
            .iter()
            .flatten()
            .try_for_each(|t| check_supported(t, path)),
        _ => Ok(()),
    }
}

/// A short human name of a WIT type, for error messages.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::Record(r) => format!(
            "record {{ {} }}",
            r.fields().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types()
                .map(|t| type_name(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases().map(|c| c.name).collect::<Vec<_>>().join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => format!(
            "result<{}, {}>",
            r.ok().map_or("_".into(), |t| type_name(&t)),
            r.err().map_or("_".into(), |t| type_name(&t))
        ),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        other => unsupported(other).unwrap_or("an unsupported type").into(),
    }
}

fn json_kind(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean `{b}`"),
        Json::Number(n) => format!("number `{n}`"),
        Json::String(s) if s.chars().count() > 40 => "a string".into(),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(a) => format!("an array of {} items", a.len()),
        Json::Object(_) => "an object".into(),
    }
}

fn mismatch(path: &str, expected: impl Into<String>, found: &Json) -> ValueError {
    ValueError {
        path: path.to_owned(),
        expected: expected.into(),
        found: json_kind(found),
    }
}

fn int<T: TryFrom<i128>>(json: &Json, ty: &Type, path: &str) -> Result<T, ValueError> {
    let wide = match json {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    };
    wide.and_then(|w| T::try_from(w).ok()).ok_or_else(|| {
        mismatch(
            path,
            format!("an integer in the range of {}", type_name(ty)),
            json,
        )
    })
}

fn float(json: &Json, ty: &Type, path: &str) -> Result<f64, ValueError> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) if s == "NaN" => Some(f64::NAN),
        Json::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Json::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
    .ok_or_else(|| mismatch(path, format!("a number ({})", type_name(ty)), json))
}

/// Converts `json` to a value of WIT type `ty`. `path` names the parameter for errors.
pub fn json_to_val(json: &Json, ty: &Type, path: &str) -> Result<Val, ValueError> {
    Ok(match ty {
        Type::Bool => Val::Bool(
            json.as_bool()
                .ok_or_else(|| mismatch(path, "a boolean", json))?,
        ),
        Type::S8 => Val::S8(int(json, ty, path)?),
        Type::U8 => Val::U8(int(json, ty, path)?),
        Type::S16 => Val::S16(int(json, ty, path)?),
        Type::U16 => Val::U16(int(json, ty, path)?),
        Type::S32 => Val::S32(int(json, ty, path)?),
        Type::U32 => Val::U32(int(json, ty, path)?),
        Type::S64 => Val::S64(int(json, ty, path)?),
        Type::U64 => Val::U64(int(json, ty, path)?),
        #[expect(
            clippy::cast_possible_truncation,
            reason = "f32 parameters take the nearest f32"
        )]
        Type::Float32 => Val::Float32(float(json, ty, path)? as f32),
        Type::Float64 => Val::Float64(float(json, ty, path)?),
        Type::Char => {
            let s = json.as_str().unwrap_or_default();
            let mut chars = s.chars();
            match (json.is_string(), chars.next(), chars.next()) {
                (true, Some(c), None) => Val::Char(c),
                _ => return Err(mismatch(path, "a string of exactly one character", json)),
            }
        }
        Type::String => Val::String(
            json.as_str()
                .ok_or_else(|| mismatch(path, "a string", json))?
                .to_owned(),
        ),
        Type::List(l) => {
            let items = json
                .as_array()
                .ok_or_else(|| mismatch(path, "an array", json))?;
            let elem = l.ty();
            Val::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| json_to_val(v, &elem, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(r) => {
            let obj = json
                .as_object()
                .ok_or_else(|| mismatch(path, format!("an object ({})", type_name(ty)), json))?;
            if let Some(unknown) = obj
                .keys()
                .find(|k| !r.fields().any(|f| f.name == k.as_str()))
            {
                return Err(ValueError {
                    path: format!("{path}.{unknown}"),
                    expected: format!("one of the fields of {}", type_name(ty)),
                    found: "an unknown field".into(),
                });
            }
            let mut fields = Vec::with_capacity(r.fields().len());
            for field in r.fields() {
                let fpath = format!("{path}.{}", field.name);
                let val = match (obj.get(field.name), &field.ty) {
                    (Some(v), t) => json_to_val(v, t, &fpath)?,
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, t) => {
                        return Err(ValueError {
                            path: fpath,
                            expected: type_name(t),
                            found: "nothing (the field is missing)".into(),
                        });
                    }
                };
                fields.push((field.name.to_owned(), val));
            }
            Val::Record(fields)
        }
        Type::Tuple(t) => {
            let items = json
                .as_array()
                .filter(|a| a.len() == t.types().len())
                .ok_or_else(|| {
                    mismatch(
                        path,
                        format!("an array of {} items ({})", t.types().len(), type_name(ty)),
                        json,
                    )
                })?;
            Val::Tuple(
                t.types()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, v))| json_to_val(v, &t, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Variant(v) => {
            let expected = || format!("{{\"<case>\": payload}} with a case of {}", type_name(ty));
            let (case, payload) =
                single_key(json).ok_or_else(|| mismatch(path, expected(), json))?;
            let found = v
                .cases()
                .find(|c| c.name == case)
                .ok_or_else(|| mismatch(path, expected(), json))?;
            let cpath = format!("{path}.{case}");
            let payload = match (&found.ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(json_to_val(p, t, &cpath)?)),
                (Some(t), None) => return Err(mismatch(&cpath, type_name(t), &Json::Null)),
                (None, None | Some(Json::Null)) => None,
                (None, Some(p)) => {
                    return Err(mismatch(&cpath, "null (the case has no payload)", p));
                }
            };
            Val::Variant(case.to_owned(), payload)
        }
        Type::Enum(e) => {
            let name = json.as_str().filter(|s| e.names().any(|n| n == *s));
            Val::Enum(
                name.ok_or_else(|| {
                    mismatch(path, format!("a case name of {}", type_name(ty)), json)
                })?
                .to_owned(),
            )
        }
        Type::Option(o) => {
            let inner = o.ty();
            match (json, &inner) {
                (Json::Null, _) => Val::Option(None),
                (_, Type::Option(_)) => {
                    let some = json
                        .as_object()
                        .filter(|m| m.len() == 1)
                        .and_then(|m| m.get("some"))
                        .ok_or_else(|| {
                            mismatch(path, "null or {\"some\": …} (a nested option)", json)
                        })?;
                    Val::Option(Some(Box::new(json_to_val(some, &inner, path)?)))
                }
                _ => Val::Option(Some(Box::new(json_to_val(json, &inner, path)?))),
            }
        }
        Type::Result(r) => {
            let (case, payload) = single_key(json)
                .filter(|(k, _)| *k == "ok" || *k == "err")
                .ok_or_else(|| mismatch(path, "{\"ok\": …} or {\"err\": …}", json))?;
            let ty = if case == "ok" { r.ok() } else { r.err() };
            let cpath = format!("{path}.{case}");
            let payload = match (ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(json_to_val(p, &t, &cpath)?)),
                (Some(t), None) => return Err(mismatch(&cpath, type_name(&t), &Json::Null)),
                (None, None | Some(Json::Null)) => None,
                (None, Some(p)) => return Err(mismatch(&cpath, "null (no payload)", p)),
            };
            Val::Result(if case == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Flags(f) => {
            let items = json
                .as_array()
                .ok_or_else(|| mismatch(path, "an array of flag names", json))?;
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .as_str()
                    .filter(|s| f.names().any(|n| n == *s))
                    .ok_or_else(|| {
                        mismatch(
                            &format!("{path}[{i}]"),
                            format!("a flag of {}", type_name(ty)),
                            item,
                        )
                    })?;
                if !set.iter().any(|s: &String| s == name) {
                    set.push(name.to_owned());
                }
            }
            // Canonical order: the declaration order of the flags.
            Val::Flags(
                f.names()
                    .filter(|n| set.iter().any(|s| s == n))
                    .map(str::to_owned)
                    .collect(),
            )
        }
        other => {
            return Err(ValueError {
                path: path.to_owned(),
                expected: type_name(other),
                found: json_kind(json),
            });
        }
    })
}

/// `{"k": v}` → `(k, Some(v))`; `"k"` → `(k, None)`.
fn single_key(json: &Json) -> Option<(&str, Option<&Json>)> {
    match json {
        Json::String(s) => Some((s.as_str(), None)),
        Json::Object(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

fn float_json(f: f64) -> Json {
    if f.is_nan() {
        json!("NaN")
    } else if f == f64::INFINITY {
        json!("Infinity")
    } else if f == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(f)
    }
}

/// Converts a WIT value of type `ty` to JSON (the inverse of [`json_to_val`]).
pub fn val_to_json(val: &Val, ty: &Type) -> Json {
    match (val, ty) {
        (Val::Bool(b), _) => json!(b),
        (Val::S8(n), _) => json!(n),
        (Val::U8(n), _) => json!(n),
        (Val::S16(n), _) => json!(n),
        (Val::U16(n), _) => json!(n),
        (Val::S32(n), _) => json!(n),
        (Val::U32(n), _) => json!(n),
        (Val::S64(n), _) => json!(n),
        (Val::U64(n), _) => json!(n),
        (Val::Float32(f), _) => float_json(f64::from(*f)),
        (Val::Float64(f), _) => float_json(*f),
        (Val::Char(c), _) => json!(c.to_string()),
        (Val::String(s), _) => json!(s),
        (Val::List(items), Type::List(l)) => {
            let elem = l.ty();
            Json::Array(items.iter().map(|v| val_to_json(v, &elem)).collect())
        }
        (Val::Record(fields), Type::Record(r)) => Json::Object(
            fields
                .iter()
                .zip(r.fields())
                .map(|((name, v), f)| (name.clone(), val_to_json(v, &f.ty)))
                .collect::<Map<_, _>>(),
        ),
        (Val::Tuple(items), Type::Tuple(t)) => Json::Array(
            items
                .iter()
                .zip(t.types())
                .map(|(v, t)| val_to_json(v, &t))
                .collect(),
        ),
        (Val::Variant(case, payload), Type::Variant(v)) => {
            let pty = v.cases().find(|c| c.name == case).and_then(|c| c.ty);
            let p = match (payload, pty) {
                (Some(p), Some(t)) => val_to_json(p, &t),
                _ => Json::Null,
            };
            json!({ case.clone(): p })
        }
        (Val::Enum(case), _) => json!(case),
        (Val::Option(None), _) => Json::Null,
        (Val::Option(Some(v)), Type::Option(o)) => {
            let inner = o.ty();
            let j = val_to_json(v, &inner);
            if matches!(inner, Type::Option(_)) {
                json!({ "some": j })
            } else {
                j
            }
        }
        (Val::Result(r), Type::Result(t)) => {
            let (key, payload, pty) = match r {
                Ok(p) => ("ok", p, t.ok()),
                Err(p) => ("err", p, t.err()),
            };
            let p = match (payload, pty) {
                (Some(p), Some(t)) => val_to_json(p, &t),
                _ => Json::Null,
            };
            json!({ key: p })
        }
        (Val::Flags(names), _) => json!(names),
        // A value whose shape does not follow its type cannot come out of wasmtime; show it
        // rather than lose it.
        (other, _) => json!(format!("{other:?}")),
    }
}

/// The ledger's canonical form of a WIT value of type `ty`: `list<u8>` is [`Value::Bytes`].
pub fn val_to_value(val: &Val, ty: &Type) -> Value {
    fn boxed(v: &Option<Box<Val>>, ty: Option<Type>) -> Option<Box<Value>> {
        match (v, ty) {
            (Some(v), Some(t)) => Some(Box::new(val_to_value(v, &t))),
            _ => None,
        }
    }
    match (val, ty) {
        (Val::Bool(b), _) => Value::Bool(*b),
        (Val::S8(n), _) => Value::S8(*n),
        (Val::U8(n), _) => Value::U8(*n),
        (Val::S16(n), _) => Value::S16(*n),
        (Val::U16(n), _) => Value::U16(*n),
        (Val::S32(n), _) => Value::S32(*n),
        (Val::U32(n), _) => Value::U32(*n),
        (Val::S64(n), _) => Value::S64(*n),
        (Val::U64(n), _) => Value::U64(*n),
        (Val::Float32(f), _) => Value::F32(f.to_bits()),
        (Val::Float64(f), _) => Value::F64(f.to_bits()),
        (Val::Char(c), _) => Value::Char(*c),
        (Val::String(s), _) => Value::String(s.clone()),
        (Val::List(items), Type::List(l)) => {
            let elem = l.ty();
            if elem == Type::U8 {
                Value::Bytes(
                    items
                        .iter()
                        .filter_map(|v| match v {
                            Val::U8(b) => Some(*b),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                Value::List(items.iter().map(|v| val_to_value(v, &elem)).collect())
            }
        }
        (Val::Record(fields), Type::Record(r)) => Value::Record(
            fields
                .iter()
                .zip(r.fields())
                .map(|((k, v), f)| (k.clone(), val_to_value(v, &f.ty)))
                .collect(),
        ),
        (Val::Tuple(items), Type::Tuple(t)) => Value::Tuple(
            items
                .iter()
                .zip(t.types())
                .map(|(v, t)| val_to_value(v, &t))
                .collect(),
        ),
        (Val::Variant(case, payload), Type::Variant(v)) => Value::Variant {
            case: case.clone(),
            payload: boxed(
                payload,
                v.cases().find(|c| c.name == case).and_then(|c| c.ty),
            ),
        },
        (Val::Enum(case), _) => Value::Enum(case.clone()),
        (Val::Option(v), Type::Option(o)) => Value::Option(boxed(v, Some(o.ty()))),
        (Val::Result(Ok(v)), Type::Result(r)) => Value::Result(Ok(boxed(v, r.ok()))),
        (Val::Result(Err(v)), Type::Result(r)) => Value::Result(Err(boxed(v, r.err()))),
        (Val::Flags(names), _) => Value::Flags(names.clone()),
        (other, _) => Value::String(format!("<unrecordable {other:?}>")),
    }
}

/// The WIT value of type `ty` that a recorded [`Value`] stands for (the inverse of
/// [`val_to_value`]); `None` when the value does not fit the type.
pub fn value_to_val(value: &Value, ty: &Type) -> Option<Val> {
    fn boxed(v: &Option<Box<Value>>, ty: Option<Type>) -> Option<Option<Box<Val>>> {
        match (v, ty) {
            (None, _) => Some(None),
            (Some(v), Some(t)) => Some(Some(Box::new(value_to_val(v, &t)?))),
            (Some(_), None) => None,
        }
    }
    Some(match (value, ty) {
        (Value::Bool(b), Type::Bool) => Val::Bool(*b),
        (Value::S8(n), Type::S8) => Val::S8(*n),
        (Value::U8(n), Type::U8) => Val::U8(*n),
        (Value::S16(n), Type::S16) => Val::S16(*n),
        (Value::U16(n), Type::U16) => Val::U16(*n),
        (Value::S32(n), Type::S32) => Val::S32(*n),
        (Value::U32(n), Type::U32) => Val::U32(*n),
        (Value::S64(n), Type::S64) => Val::S64(*n),
        (Value::U64(n), Type::U64) => Val::U64(*n),
        (Value::F32(bits), Type::Float32) => Val::Float32(f32::from_bits(*bits)),
        (Value::F64(bits), Type::Float64) => Val::Float64(f64::from_bits(*bits)),
        (Value::Char(c), Type::Char) => Val::Char(*c),
        (Value::String(s), Type::String) => Val::String(s.clone()),
        (Value::Bytes(bytes), Type::List(l)) if l.ty() == Type::U8 => {
            Val::List(bytes.iter().map(|b| Val::U8(*b)).collect())
        }
        (Value::List(items), Type::List(l)) => {
            let elem = l.ty();
            Val::List(
                items
                    .iter()
                    .map(|v| value_to_val(v, &elem))
                    .collect::<Option<_>>()?,
            )
        }
        (Value::Record(fields), Type::Record(r)) if fields.len() == r.fields().len() => {
            Val::Record(
                fields
                    .iter()
                    .zip(r.fields())
                    .map(|((k, v), f)| {
                        (k == f.name).then_some(())?;
                        Some((k.clone(), value_to_val(v, &f.ty)?))
                    })
                    .collect::<Option<_>>()?,
            )
        }
        (Value::Tuple(items), Type::Tuple(t)) if items.len() == t.types().len() => Val::Tuple(
            items
                .iter()
                .zip(t.types())
                .map(|(v, t)| value_to_val(v, &t))
                .collect::<Option<_>>()?,
        ),
        (Value::Variant { case, payload }, Type::Variant(v)) => {
            let found = v.cases().find(|c| c.name == case)?;
            Val::Variant(case.clone(), boxed(payload, found.ty)?)
        }
        (Value::Enum(case), Type::Enum(e)) if e.names().any(|n| n == case) => {
            Val::Enum(case.clone())
        }
        (Value::Option(v), Type::Option(o)) => Val::Option(boxed(v, Some(o.ty()))?),
        (Value::Result(Ok(v)), Type::Result(r)) => Val::Result(Ok(boxed(v, r.ok())?)),
        (Value::Result(Err(v)), Type::Result(r)) => Val::Result(Err(boxed(v, r.err())?)),
        (Value::Flags(names), Type::Flags(f))
            if names.iter().all(|n| f.names().any(|m| m == n)) =>
        {
            Val::Flags(names.clone())
        }
        _ => return None,
    })
}

/// The JSON Schema (draft 2020-12) of values of WIT type `ty` under this module's scheme.
pub fn schema(ty: &Type) -> Json {
    let int = |min: i128, max: i128| json!({ "type": "integer", "minimum": min, "maximum": max });
    match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => int(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => int(0, u8::MAX.into()),
        Type::S16 => int(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => int(0, u16::MAX.into()),
        Type::S32 => int(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => int(0, u32::MAX.into()),
        Type::S64 => int(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => int(0, u64::MAX.into()),
        Type::Float32 | Type::Float64 => json!({
            "anyOf": [{ "type": "number" }, { "enum": ["NaN", "Infinity", "-Infinity"] }]
        }),
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        Type::List(l) => json!({ "type": "array", "items": schema(&l.ty()) }),
        Type::Record(r) => {
            let properties: Map<String, Json> = r
                .fields()
                .map(|f| (f.name.to_owned(), schema(&f.ty)))
                .collect();
            let required: Vec<&str> = r
                .fields()
                .filter(|f| !matches!(f.ty, Type::Option(_)))
                .map(|f| f.name)
                .collect();
            json!({ "type": "object", "properties": properties, "required": required,
                    "additionalProperties": false })
        }
        Type::Tuple(t) => {
            let items: Vec<Json> = t.types().map(|t| schema(&t)).collect();
            let n = items.len();
            json!({ "type": "array", "prefixItems": items, "minItems": n, "maxItems": n })
        }
        Type::Variant(v) => json!({ "oneOf": v.cases().map(|c| match c.ty {
            Some(t) => case_schema(c.name, schema(&t)),
            None => json!({ "anyOf": [{ "const": c.name }, case_schema(c.name, json!({ "type": "null" }))] }),
        }).collect::<Vec<_>>() }),
        Type::Enum(e) => json!({ "enum": e.names().collect::<Vec<_>>() }),
        Type::Option(o) => {
            let inner = o.ty();
            let some = if matches!(inner, Type::Option(_)) {
                case_schema("some", schema(&inner))
            } else {
                schema(&inner)
            };
            json!({ "anyOf": [{ "type": "null" }, some] })
        }
        Type::Result(r) => {
            let arm = |t: Option<Type>| t.map_or(json!({ "type": "null" }), |t| schema(&t));
            json!({ "oneOf": [case_schema("ok", arm(r.ok())), case_schema("err", arm(r.err()))] })
        }
        Type::Flags(f) => json!({
            "type": "array", "uniqueItems": true, "items": { "enum": f.names().collect::<Vec<_>>() }
        }),
        other => json!({ "not": {}, "description": type_name(other) }),
    }
}

fn case_schema(name: &str, payload: Json) -> Json {
    json!({
        "type": "object",
        "properties": { name: payload },
        "required": [name],
        "additionalProperties": false
    })
}

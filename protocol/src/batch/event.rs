//! EVENT records (kind 5) and their attributes.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::error::{FieldError, Problem};
use crate::wire::{
    Res, bytes_field, bytes_len, check_len, check_range, f64_field, fail, put_bytes, put_str, put_svarint, str_field,
    svarint, u8_field, varint, varint_len, zigzag,
};

use super::*;

/// The most attributes an EVENT may carry.
pub const MAX_EVENT_ATTRS: usize = 64;

/// EVENT (kind 5).
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// 1–128 bytes.
    pub name: Cow<'a, str>,
    /// 0–64 attributes with unique keys, in wire order.
    pub attrs: Vec<Attr<'a>>,
}

impl<'a> Event<'a> {
    pub(super) fn parse(input: &'a [u8]) -> Res<'a, Event<'a>> {
        let (input, name) = str_field(input, "name", 0, u64::MAX)?;
        let (mut input, n) = varint(input, "n")?;
        if n > MAX_EVENT_ATTRS as u64 {
            return fail(
                "n",
                Problem::Range {
                    value: n.into(),
                    min: 0,
                    max: MAX_EVENT_ATTRS as i128,
                },
            );
        }
        let mut attrs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (rest, attr) = Attr::parse(input)?;
            attrs.push(attr);
            input = rest;
        }
        Ok((
            input,
            Event {
                name: Cow::Borrowed(name),
                attrs,
            },
        ))
    }

    /// The rules of AWP1.md §5 for EVENT.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("name", self.name.len(), 1, 128)?;
        check_range("n", self.attrs.len() as u64, 0, MAX_EVENT_ATTRS as u64)?;
        for (i, attr) in self.attrs.iter().enumerate() {
            attr.check()?;
            // At most 64 short keys: a quadratic scan beats hashing.
            if self.attrs[..i].iter().any(|a| a.key == attr.key) {
                return Err(FieldError::new("key", Problem::DuplicateKey));
            }
        }
        Ok(())
    }
}

/// One EVENT attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr<'a> {
    /// 1–64 bytes, unique within the record.
    pub key: Cow<'a, str>,
    /// The typed value.
    pub value: AttrValue<'a>,
}

/// An EVENT attribute value, by tag.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// Tag 0.
    Null,
    /// Tag 1.
    Bool(bool),
    /// Tag 2.
    Int(i64),
    /// Tag 3: finite, and 0 or of magnitude 1e-130 ..= 9.99e125.
    Float(f64),
    /// Tag 4: 0–4,096 bytes.
    String(Cow<'a, str>),
    /// Tag 5: 0–4,096 bytes.
    Bytes(Cow<'a, [u8]>),
}

/// The longest string or bytes attribute value.
pub const MAX_ATTR_VALUE_LEN: usize = 4096;

/// Whether a float fits DynamoDB's number range, as EVENT floats must.
pub fn is_storable_float(v: f64) -> bool {
    v == 0.0 || (v.is_finite() && (1e-130..=9.99e125).contains(&v.abs()))
}

impl<'a> AttrValue<'a> {
    /// The wire tag.
    pub fn tag(&self) -> u8 {
        match self {
            AttrValue::Null => 0,
            AttrValue::Bool(_) => 1,
            AttrValue::Int(_) => 2,
            AttrValue::Float(_) => 3,
            AttrValue::String(_) => 4,
            AttrValue::Bytes(_) => 5,
        }
    }
}

impl<'a> Attr<'a> {
    pub(super) fn parse(input: &'a [u8]) -> Res<'a, Attr<'a>> {
        let (input, key) = str_field(input, "key", 0, u64::MAX)?;
        let (input, tag) = u8_field(input, "tag")?;
        let (input, value) = match tag {
            0 => (input, AttrValue::Null),
            1 => {
                let (input, v) = u8_field(input, "value")?;
                match v {
                    0 | 1 => (input, AttrValue::Bool(v == 1)),
                    _ => return fail("value", Problem::Rule("bool must be 0 or 1")),
                }
            }
            2 => svarint(input, "value").map(|(i, v)| (i, AttrValue::Int(v)))?,
            3 => f64_field(input, "value").map(|(i, v)| (i, AttrValue::Float(v)))?,
            4 => str_field(input, "value", 0, MAX_ATTR_VALUE_LEN as u64)
                .map(|(i, v)| (i, AttrValue::String(Cow::Borrowed(v))))?,
            5 => bytes_field(input, "value", 0, MAX_ATTR_VALUE_LEN as u64)
                .map(|(i, v)| (i, AttrValue::Bytes(Cow::Borrowed(v))))?,
            other => return fail("tag", Problem::UnknownValue(other.into())),
        };
        Ok((
            input,
            Attr {
                key: Cow::Borrowed(key),
                value,
            },
        ))
    }

    /// The rules of AWP1.md §5 for one attribute (uniqueness is the event's).
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("key", self.key.len(), 1, 64)?;
        match &self.value {
            AttrValue::Float(v) if !is_storable_float(*v) => {
                Err(FieldError::new("value", Problem::FloatOutOfRange(*v)))
            }
            AttrValue::String(s) => check_len("value", s.len(), 0, MAX_ATTR_VALUE_LEN as u64),
            AttrValue::Bytes(b) => check_len("value", b.len(), 0, MAX_ATTR_VALUE_LEN as u64),
            _ => Ok(()),
        }
    }

    pub(super) fn encoded_len(&self) -> usize {
        bytes_len(self.key.len())
            + 1
            + match &self.value {
                AttrValue::Null => 0,
                AttrValue::Bool(_) => 1,
                AttrValue::Int(v) => varint_len(zigzag(*v)),
                AttrValue::Float(_) => 8,
                AttrValue::String(s) => bytes_len(s.len()),
                AttrValue::Bytes(b) => bytes_len(b.len()),
            }
    }

    pub(super) fn write(&self, b: &mut BytesMut) {
        put_str(b, &self.key);
        b.put_u8(self.value.tag());
        match &self.value {
            AttrValue::Null => {}
            AttrValue::Bool(v) => b.put_u8(u8::from(*v)),
            AttrValue::Int(v) => put_svarint(b, *v),
            AttrValue::Float(v) => b.put_f64(*v),
            AttrValue::String(s) => put_str(b, s),
            AttrValue::Bytes(v) => put_bytes(b, v),
        }
    }

    /// A copy that owns its strings and bytes.
    pub fn into_owned(self) -> Attr<'static> {
        Attr {
            key: owned(self.key),
            value: match self.value {
                AttrValue::Null => AttrValue::Null,
                AttrValue::Bool(v) => AttrValue::Bool(v),
                AttrValue::Int(v) => AttrValue::Int(v),
                AttrValue::Float(v) => AttrValue::Float(v),
                AttrValue::String(s) => AttrValue::String(owned(s)),
                AttrValue::Bytes(b) => AttrValue::Bytes(Cow::Owned(b.into_owned())),
            },
        }
    }
}

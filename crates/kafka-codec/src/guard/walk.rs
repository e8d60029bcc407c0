//! The walk: reads a frame field by field exactly as `kafka-protocol`'s
//! generated decoders would, without allocating, and adds up what their
//! allocations would cost.

use std::fmt::Write as _;
use std::mem::size_of;

use bytes::Bytes;

use super::schema::{Field, Message, Struct, Ty};

/// Budget charged for one more unknown tagged field of a structure:
/// `kafka-protocol` keeps them in a `BTreeMap<i32, Bytes>`; the entry plus a
/// share of the B-tree nodes (at least 5 entries a node once it splits).
pub(crate) const UNKNOWN_TAG_COST: u64 = size_of::<(i32, Bytes)>() as u64 + 64;

/// Budget charged for the first unknown tagged field of a structure: the
/// map's first B-tree leaf, room for 11 entries plus its parent link and
/// lengths (408 bytes for `BTreeMap<i32, Bytes>` today).
pub(crate) const FIRST_UNKNOWN_TAG_COST: u64 = 16 + 11 * size_of::<(i32, Bytes)>() as u64;

/// Why a walk stopped.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The bytes do not follow the schema.
    Malformed {
        /// Offset in the frame where the offending item starts.
        at: usize,
        /// Where in the message, innermost first (built while unwinding).
        path: Vec<Seg>,
        /// What is wrong.
        problem: String,
    },
    /// Decoding would allocate more than the budget.
    OverBudget {
        /// Bytes the counts seen so far would allocate.
        needed: u64,
    },
}

/// One step of the path to a malformed item.
#[derive(Debug)]
pub(crate) enum Seg {
    /// A named field.
    Field(&'static str),
    /// An array element.
    Index(usize),
}

impl Fault {
    fn within(mut self, seg: Seg) -> Fault {
        if let Fault::Malformed { path, .. } = &mut self {
            path.push(seg);
        }
        self
    }

    /// `Message.Field[3].Field at byte N: problem`.
    pub(crate) fn describe(path: &[Seg], root: &str, at: usize, problem: &str) -> String {
        let mut s = String::from(root);
        for seg in path.iter().rev() {
            match seg {
                Seg::Field(name) => {
                    s.push('.');
                    s.push_str(name);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        let _ = write!(s, " at byte {at}: {problem}");
        s
    }
}

/// What the fields of one message are read with.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    version: i16,
    /// The message version is flexible: compact encodings, tagged fields.
    flexible: bool,
}

/// A cursor over a whole frame, walking one message after the other (the
/// header, then the body).
#[derive(Debug)]
pub(crate) struct Walker<'a> {
    frame: &'a [u8],
    pos: usize,
    /// Where the current item ends: the frame's end, or a tagged field's.
    end: usize,
    needed: u64,
    budget: u64,
}

type Walk<T = ()> = Result<T, Fault>;

impl<'a> Walker<'a> {
    /// A walk over `frame`, allowed to need `budget` bytes of collections.
    pub(crate) fn new(frame: &'a [u8], budget: u64) -> Self {
        Walker { frame, pos: 0, end: frame.len(), needed: 0, budget }
    }

    /// Bytes of collections the walked messages would allocate so far.
    pub(crate) fn needed(&self) -> u64 {
        self.needed
    }

    /// Walks one message at `version` from the current position.
    pub(crate) fn message(&mut self, msg: &Message, version: i16) -> Walk {
        if !msg.valid.contains(version) {
            return Err(self.malformed(self.pos, format!("version {version} is not described by the guard")));
        }
        let ctx = Ctx { version, flexible: msg.flexible.contains(version) };
        self.structure(&msg.body, ctx)
    }

    /// Requires the whole frame to have been read (tests use it to find the
    /// walker's position).
    #[cfg(test)]
    pub(crate) fn finish(&self) -> Walk {
        match self.frame.len() - self.pos {
            0 => Ok(()),
            n => Err(self.malformed(self.pos, format!("{n} bytes after the end of the request"))),
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn malformed(&self, at: usize, problem: String) -> Fault {
        Fault::Malformed { at, path: Vec::new(), problem }
    }

    fn take(&mut self, n: usize) -> Walk<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.malformed(self.pos, format!("needs {n} bytes, {} remain", self.remaining())));
        }
        let frame = self.frame;
        let s = &frame[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The `len` bytes of a string or bytes field whose length starts at
    /// `start`.
    fn take_declared(&mut self, len: usize, start: usize) -> Walk<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.malformed(start, format!("length {len}, but only {} bytes remain", self.remaining())));
        }
        self.take(len)
    }

    fn charge(&mut self, bytes: u64) -> Walk {
        self.needed = self.needed.saturating_add(bytes);
        if self.needed > self.budget {
            return Err(Fault::OverBudget { needed: self.needed });
        }
        Ok(())
    }

    /// An unsigned varint of at most 32 bits (5 bytes), as Kafka encodes
    /// lengths, counts and tags. `kafka-protocol` would silently drop bits
    /// past the 32nd; no encoder writes them, so they are refused.
    pub(crate) fn uvarint(&mut self) -> Walk<u32> {
        let start = self.pos;
        let mut value = 0u32;
        for i in 0..5 {
            let Some(&b) = self.frame[..self.end].get(self.pos) else {
                return Err(self.malformed(start, "truncated unsigned varint".into()));
            };
            self.pos += 1;
            if i == 4 && b > 0x0f {
                return Err(self.malformed(start, "unsigned varint longer than 32 bits".into()));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.malformed(start, "unsigned varint longer than 32 bits".into()))
    }

    /// A length or count: `None` for null. Compact ones are varint + 1;
    /// classic ones an `int16` (strings) or `int32`, -1 for null.
    fn length(&mut self, compact: bool, wide: bool) -> Walk<Option<usize>> {
        let start = self.pos;
        let n: i64 = if compact {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            let b = self.take(4)?;
            i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            let b = self.take(2)?;
            i64::from(i16::from_be_bytes([b[0], b[1]]))
        };
        match n {
            -1 => Ok(None),
            n if n < -1 => Err(self.malformed(start, format!("negative length {n}"))),
            // At most u32::MAX: fits a usize on every platform Fjord runs on.
            n => Ok(Some(n as usize)),
        }
    }

    fn non_null(&self, len: Option<usize>, nullable: bool, at: usize, version: i16) -> Walk<Option<usize>> {
        match len {
            None if !nullable => Err(self.malformed(at, format!("null, which version {version} does not allow"))),
            len => Ok(len),
        }
    }

    fn structure(&mut self, s: &Struct, ctx: Ctx) -> Walk {
        for f in s.fields {
            if !f.versions.contains(ctx.version) || f.tag_in(ctx.version).is_some() {
                continue;
            }
            self.field(f, ctx).map_err(|e| e.within(Seg::Field(f.name)))?;
        }
        if ctx.flexible {
            self.tagged_fields(s, ctx).map_err(|e| e.within(Seg::Field("<tagged fields>")))?;
        }
        Ok(())
    }

    fn field(&mut self, f: &Field, ctx: Ctx) -> Walk {
        let compact = ctx.flexible && f.flexible.contains(ctx.version);
        self.value(&f.ty, compact, f.nullable.contains(ctx.version), ctx)
    }

    fn value(&mut self, ty: &Ty, compact: bool, nullable: bool, ctx: Ctx) -> Walk {
        let start = self.pos;
        match ty {
            Ty::Int8 | Ty::Bool => self.take(1).map(drop),
            Ty::Int16 => self.take(2).map(drop),
            Ty::Int32 => self.take(4).map(drop),
            Ty::Int64 | Ty::Float64 => self.take(8).map(drop),
            Ty::Uuid => self.take(16).map(drop),
            Ty::String => {
                let len = self.length(compact, false)?;
                let Some(len) = self.non_null(len, nullable, start, ctx.version)? else { return Ok(()) };
                let s = self.take_declared(len, start)?;
                match std::str::from_utf8(s) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.malformed(start, format!("string is not UTF-8 ({e})"))),
                }
            }
            Ty::Bytes | Ty::Records => {
                let len = self.length(compact, true)?;
                match self.non_null(len, nullable, start, ctx.version)? {
                    Some(len) => self.take_declared(len, start).map(drop),
                    None => Ok(()),
                }
            }
            Ty::Array { elem, elem_size } => {
                let count = self.length(compact, true)?;
                let Some(count) = self.non_null(count, nullable, start, ctx.version)? else { return Ok(()) };
                // Every element takes at least one byte (checked by a test
                // over all schemas), so a larger count cannot be honest.
                if count > self.remaining() {
                    let problem = format!("{count} elements, but only {} bytes remain", self.remaining());
                    return Err(self.malformed(start, problem));
                }
                self.charge((count as u64).saturating_mul(*elem_size as u64))?;
                for i in 0..count {
                    self.value(elem, compact, false, ctx).map_err(|e| e.within(Seg::Index(i)))?;
                }
                Ok(())
            }
            Ty::Struct(s) => {
                if nullable {
                    // `kafka-protocol` reads a structure after 1 and null
                    // otherwise; Kafka writes -1 for null. Anything else
                    // is no honest client's.
                    match self.take(1)?[0] as i8 {
                        -1 => return Ok(()),
                        1 => {}
                        m => return Err(self.malformed(start, format!("presence byte {m} of a nullable structure"))),
                    }
                }
                self.structure(s, ctx)
            }
        }
    }

    /// The tagged-field section ending a structure in flexible versions.
    /// Known tags are decoded by `kafka-protocol` as their field's type,
    /// whatever size the tag declares, so they are walked by schema and must
    /// fill exactly that size; unknown ones are kept as raw bytes in a map.
    fn tagged_fields(&mut self, s: &Struct, ctx: Ctx) -> Walk {
        let start = self.pos;
        let count = self.uvarint()? as usize;
        // A tag and a size: two bytes at least.
        if count > self.remaining() / 2 {
            let problem = format!("{count} tagged fields, but only {} bytes remain", self.remaining());
            return Err(self.malformed(start, problem));
        }
        let mut unknown = 0u32;
        for _ in 0..count {
            let tag_at = self.pos;
            let tag = self.uvarint()?;
            if tag > i32::MAX as u32 {
                return Err(self.malformed(tag_at, format!("tag {tag} is larger than i32::MAX")));
            }
            let size = self.uvarint()? as usize;
            if size > self.remaining() {
                let problem = format!("tag {tag} declares {size} bytes, but only {} remain", self.remaining());
                return Err(self.malformed(tag_at, problem));
            }
            match s.fields.iter().find(|f| f.tag.is_some_and(|(t, _)| t == tag)) {
                Some(f) => {
                    if f.tag_in(ctx.version).is_none() {
                        let problem = format!("tag {tag} ({}) is not valid in version {}", f.name, ctx.version);
                        return Err(self.malformed(tag_at, problem));
                    }
                    let (outer_end, end) = (self.end, self.pos + size);
                    self.end = end;
                    let walked = self.field(f, ctx).and_then(|()| match end - self.pos {
                        0 => Ok(()),
                        n => Err(self.malformed(self.pos, format!("{n} bytes left over in a tag of {size} bytes"))),
                    });
                    self.end = outer_end;
                    walked.map_err(|e| e.within(Seg::Field(f.name)))?;
                }
                None => {
                    self.take(size)?;
                    unknown += 1;
                    self.charge(if unknown == 1 { FIRST_UNKNOWN_TAG_COST } else { UNKNOWN_TAG_COST })?;
                }
            }
        }
        Ok(())
    }
}

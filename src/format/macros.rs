//! Declarative helpers that generate `Encode`/`Decode` impls for the many Ceph structures
//! whose layout is a plain field list: unframed concatenations (cls method arguments),
//! single-version frames, and integer enums that must keep values from newer releases.
//! Hand-written impls remain wherever a layout depends on the frame version.

/// A plain struct whose encoding is its fields back to back (no frame): cls method inputs
/// and outputs, and unframed librbd pieces. Fields are decoded in declaration order.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        impl $crate::format::codec::Encode for $name {
            fn encode(&self, e: &mut $crate::format::codec::Encoder) {
                $( e.put(&self.$f); )*
            }
        }
        impl $crate::format::codec::Decode for $name {
            const MIN_LEN: usize = 0 $( + <$t as $crate::format::codec::Decode>::MIN_LEN )*;
            fn decode(d: &mut $crate::format::codec::Decoder)
                -> $crate::format::codec::Result<Self> {
                Ok($name { $( $f: d.get()? ),* })
            }
        }
    };
}

/// A struct inside one `ENCODE_START(v, compat)` frame whose fields are all present since
/// version 1 (anything a newer writer appends is skipped by the frame).
macro_rules! framed_struct {
    ($(#[$m:meta])* pub struct $name:ident ($v:expr, $compat:expr) {
        $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        impl $crate::format::codec::Encode for $name {
            fn encode(&self, e: &mut $crate::format::codec::Encoder) {
                e.frame($v, $compat, |e| { $( e.put(&self.$f); )* });
            }
        }
        impl $crate::format::codec::Decode for $name {
            const MIN_LEN: usize = 6;
            fn decode(d: &mut $crate::format::codec::Decoder)
                -> $crate::format::codec::Result<Self> {
                let mut f = d.frame(stringify!($name), $v)?;
                let b = &mut f.body;
                Ok($name { $( $f: b.get()? ),* })
            }
        }
    };
}

/// A wire enum with named values and an `Other(raw)` catch-all, so values from newer releases
/// survive a decode/encode round trip instead of failing the whole structure.
macro_rules! wire_enum {
    ($(#[$m:meta])* pub enum $name:ident: $repr:ident { $($(#[$vm:meta])* $var:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var,)* Other($repr) }
        impl $name {
            pub fn from_raw(v: $repr) -> Self {
                match v { $($val => $name::$var,)* other => $name::Other(other) }
            }
            pub fn raw(self) -> $repr {
                match self { $($name::$var => $val,)* $name::Other(v) => v }
            }
        }
        impl $crate::format::codec::Encode for $name {
            fn encode(&self, e: &mut $crate::format::codec::Encoder) { e.$repr(self.raw()) }
        }
        impl $crate::format::codec::Decode for $name {
            const MIN_LEN: usize = std::mem::size_of::<$repr>();
            fn decode(d: &mut $crate::format::codec::Decoder)
                -> $crate::format::codec::Result<Self> {
                Ok($name::from_raw(d.$repr()?))
            }
        }
    };
}

pub(crate) use {framed_struct, wire_enum, wire_struct};

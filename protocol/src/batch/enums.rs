//! The wire enums of NET_USAGE (`network`) and MESSAGE (`direction`,
//! `channel`): a byte on the wire, a name in items.

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $value),+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value for a wire byte, if defined.
            pub fn from_u8(v: u8) -> Option<$name> {
                match v {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The name stored in items.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

wire_enum! {
    /// NET_USAGE `network`.
    Network {
        /// 0
        Unknown = 0 => "unknown",
        /// 1
        Wifi = 1 => "wifi",
        /// 2
        Cellular = 2 => "cellular",
        /// 3
        Ethernet = 3 => "ethernet",
        /// 4
        Other = 4 => "other",
    }
}

wire_enum! {
    /// MESSAGE `direction`.
    Direction {
        /// 0: received.
        In = 0 => "in",
        /// 1: sent.
        Out = 1 => "out",
    }
}

wire_enum! {
    /// MESSAGE `channel`.
    Channel {
        /// 0
        Sms = 0 => "sms",
        /// 1: `size` is seconds.
        Call = 1 => "call",
        /// 2
        Email = 2 => "email",
        /// 3
        Chat = 3 => "chat",
        /// 4
        Other = 4 => "other",
    }
}

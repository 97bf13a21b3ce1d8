//! Intercepted guest operations described once for both backends, so code
//! above the arch seam does not care whether VMX or SVM decoded them.

/// Direction of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// IN, INS: the guest reads the port.
    In,
    /// OUT, OUTS: the guest writes the port.
    Out,
}

/// Operand size of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoSize {
    Byte,
    Word,
    Dword,
}

impl IoSize {
    pub const fn bytes(self) -> u8 {
        match self {
            IoSize::Byte => 1,
            IoSize::Word => 2,
            IoSize::Dword => 4,
        }
    }
}

/// One intercepted IN, OUT, INS or OUTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPortAccess {
    pub port: u16,
    pub size: IoSize,
    pub direction: IoDirection,
    /// INS or OUTS.
    pub string: bool,
    /// REP-prefixed (string instructions only).
    pub rep: bool,
}

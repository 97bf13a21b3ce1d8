//! The `interface!` macro.

/// Declares a service interface once and generates both ends of it.
///
/// ```
/// use tessera_idl::{interface, ServiceError};
///
/// interface! {
///     /// A key-value store.
///     pub interface Store {
///         /// Stores `value` under `key`.
///         fn put(key: u32, value: &[u8]) -> Result<(), ServiceError> = 1;
///         /// How many keys are stored.
///         fn count() -> u64 = 2;
///         /// Forgets everything (no reply value).
///         fn clear() = 3;
///     }
/// }
/// ```
///
/// # Syntax
///
/// `[attrs] vis interface Name { ([attrs] fn op(arg: Type, ...) [-> Ret] = NUMBER;)* }`
///
/// - `NUMBER` (a `u32` constant expression) is the request label; it must be
///   non-zero, below `0xffff_0000` (kernel labels) and unique — checked at
///   compile time.
/// - Argument types: anything implementing [`Arg`](crate::Arg): the integers
///   `u8`..`u64`, `bool`, `&[u8]`, [`Bytes`](crate::Bytes), `Option`,
///   `Result` and tuples of those.
/// - `Ret` (default `()`) must implement [`Encode`](crate::Encode) and
///   [`Decode`](crate::Decode): the same types, except `&[u8]` (return
///   [`Bytes`](crate::Bytes)). `Result<T, E>` takes an `E` coded as `u64`
///   (see [`code_enum!`](crate::code_enum)).
///
/// # Generated items
///
/// In the scope of the invocation (one interface per module):
/// - `INTERFACE: &str`, the interface's name;
/// - `mod ops`: one `u32` constant per operation, named like it;
/// - `trait Server`: one method per operation, `fn op(&mut self, caller:
///   Badge, args...) -> Ret`;
/// - `fn dispatch_in_place(server, caller, &mut message)`: decodes the
///   request, calls the method and replaces the message with the reply. An
///   unknown label or a request that does not decode exactly (too short, bad
///   value, bad length, trailing words) gets a
///   [`ProtocolError`](crate::ProtocolError) reply and the server method is
///   not called. `dispatch(server, caller, &request) -> Message` is the same
///   on a copy;
/// - `struct Client<T: Transport>`: `Client::new(transport, endpoint)` and one
///   method per operation, `fn op(&self, args...) -> Result<Ret, CallError>`.
#[macro_export]
macro_rules! interface {
    (
        $(#[$imeta:meta])*
        $vis:vis interface $iface:ident {
            $(
                $(#[$ometa:meta])*
                fn $op:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? = $num:expr ;
            )*
        }
    ) => {
        /// The interface's name.
        #[allow(dead_code)]
        $vis const INTERFACE: &str = stringify!($iface);

        /// Request labels of the interface's operations.
        #[allow(non_upper_case_globals, dead_code)]
        $vis mod ops {
            // Operation numbers may name constants of the invoking module.
            #[allow(unused_imports)]
            use super::*;
            $(
                #[doc = concat!("Label of `", stringify!($op), "`.")]
                pub const $op: u32 = $num;
            )*
        }

        const _: () = {
            let ops: &[u32] = &[$(ops::$op),*];
            let mut i = 0;
            while i < ops.len() {
                assert!(ops[i] != 0, "interface!: operation number 0 is reserved");
                assert!(ops[i] < 0xffff_0000, "interface!: operation numbers from 0xffff_0000 are kernel labels");
                let mut j = i + 1;
                while j < ops.len() {
                    assert!(ops[i] != ops[j], "interface!: two operations share a number");
                    j += 1;
                }
                i += 1;
            }
        };

        $(#[$imeta])*
        ///
        /// The server side: implement this and hand requests to [`dispatch`].
        $vis trait Server {
            $(
                $(#[$ometa])*
                #[allow(clippy::too_many_arguments)]
                fn $op(&mut self, caller: $crate::Badge $(, $arg: $ty)*) -> $crate::__ret_type!($($ret)?);
            )*
        }

        /// Decodes the request in `message`, calls the matching [`Server`]
        /// method on behalf of `caller` and replaces `message` with the reply.
        /// Never panics on a bad request.
        #[allow(unused_mut, unused_variables)]
        $vis fn dispatch_in_place<S: Server + ?Sized>(server: &mut S, caller: $crate::Badge, message: &mut $crate::Message) {
            match message.label() {
                $(
                    ops::$op => {
                        let mut decoder = $crate::Decoder::new(message.words());
                        $(
                            let $arg = match <<$ty as $crate::Arg>::Owned as $crate::Decode>::decode(&mut decoder) {
                                Ok(value) => value,
                                Err(error) => return $crate::set_malformed(message, error),
                            };
                        )*
                        if let Err(error) = decoder.finish() {
                            return $crate::set_malformed(message, error);
                        }
                        let ret: $crate::__ret_type!($($ret)?) = server.$op(caller $(, <$ty as $crate::Arg>::borrow(&$arg))*);
                        $crate::set_reply(message, &ret);
                    }
                )*
                _ => $crate::set_unknown_operation(message),
            }
        }

        /// [`dispatch_in_place`] on a copy of `request`: returns the reply.
        #[allow(dead_code)]
        $vis fn dispatch<S: Server + ?Sized>(server: &mut S, caller: $crate::Badge, request: &$crate::Message) -> $crate::Message {
            let mut message = request.clone();
            dispatch_in_place(server, caller, &mut message);
            message
        }

        $(#[$imeta])*
        ///
        /// The client side: each method sends one request and waits for the reply.
        #[derive(Clone, Copy, Debug)]
        $vis struct Client<T> {
            transport: T,
            endpoint: $crate::CapSlot,
        }

        impl<T: $crate::Transport> Client<T> {
            /// A client of the server behind `endpoint` (a capability with SEND).
            pub const fn new(transport: T, endpoint: $crate::CapSlot) -> Self {
                Client { transport, endpoint }
            }

            pub const fn endpoint(&self) -> $crate::CapSlot {
                self.endpoint
            }

            $(
                $(#[$ometa])*
                #[allow(unused_mut, unused_variables, clippy::too_many_arguments)]
                pub fn $op(&self $(, $arg: $ty)*) -> ::core::result::Result<$crate::__ret_type!($($ret)?), $crate::CallError> {
                    let mut message = $crate::Message::new(0);
                    $crate::encode_request(&mut message, ops::$op, |encoder| {
                        $($crate::Encode::encode(&$arg, encoder)?;)*
                        Ok(())
                    })?;
                    self.transport.call(self.endpoint, &mut message).map_err($crate::CallError::Kernel)?;
                    $crate::decode_reply(&message)
                }
            )*
        }
    };
}

/// The return type of an operation: the declared one, or `()`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ret_type {
    () => {
        ()
    };
    ($ret:ty) => {
        $ret
    };
}

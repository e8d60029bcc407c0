//! AMQP exceptions: what a failed method is answered with. A code below
//! 500 closes only the channel the method came on; 500 and up close the
//! connection (see `fjord_amqp_codec::reply`).

use fjord_amqp_codec::reply;

/// A reply code and text, raised by a method handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpException {
    /// Reply code.
    pub code: u16,
    /// Reply text (the spec's name of the code is prepended on the wire).
    pub text: String,
}

macro_rules! ctor {
    ($($name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($code), "` exception.")]
            pub fn $name(text: impl Into<String>) -> Self {
                AmqpException { code: reply::$code, text: text.into() }
            }
        )*
    };
}

impl AmqpException {
    ctor! {
        access_refused => ACCESS_REFUSED,
        not_found => NOT_FOUND,
        resource_locked => RESOURCE_LOCKED,
        precondition_failed => PRECONDITION_FAILED,
        frame_error => FRAME_ERROR,
        syntax_error => SYNTAX_ERROR,
        command_invalid => COMMAND_INVALID,
        channel_error => CHANNEL_ERROR,
        unexpected_frame => UNEXPECTED_FRAME,
        resource_error => RESOURCE_ERROR,
        not_allowed => NOT_ALLOWED,
        not_implemented => NOT_IMPLEMENTED,
        internal_error => INTERNAL_ERROR,
    }

    /// Whether it closes the connection rather than the channel.
    pub fn is_connection_level(&self) -> bool {
        reply::is_connection_error(self.code)
    }

    /// The reply text as RabbitMQ writes it: `NOT_FOUND - no queue 'q'`.
    pub fn reply_text(&self) -> String {
        crate::mapping::truncate(&format!("{} - {}", reply::name(self.code), self.text))
    }
}

impl std::fmt::Display for AmqpException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reply_text())
    }
}

/// The result of a method handler.
pub type MethodResult<T = ()> = Result<T, AmqpException>;

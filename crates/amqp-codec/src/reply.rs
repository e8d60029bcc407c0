//! Reply codes of `connection.close` and `channel.close` (AMQP 0-9-1
//! spec, section "constants"). Codes below 500 are channel exceptions
//! (only the channel closes); 500 and up are connection exceptions.

/// Success (a normal close).
pub const REPLY_SUCCESS: u16 = 200;
/// basic.publish with `immediate` could not be delivered at once.
pub const NO_CONSUMERS: u16 = 313;
/// A mandatory message had no queue to go to.
pub const NO_ROUTE: u16 = 312;
/// The operator closed the connection.
pub const CONNECTION_FORCED: u16 = 320;
/// Bad virtual host name or path.
pub const INVALID_PATH: u16 = 402;
/// Missing permission, or an exclusive resource used by another connection.
pub const ACCESS_REFUSED: u16 = 403;
/// No such exchange or queue.
pub const NOT_FOUND: u16 = 404;
/// An exclusive queue is used by another connection.
pub const RESOURCE_LOCKED: u16 = 405;
/// Arguments do not match the existing entity, or a precondition failed.
pub const PRECONDITION_FAILED: u16 = 406;
/// A frame the connection could not parse.
pub const FRAME_ERROR: u16 = 501;
/// Arguments that do not parse or are out of range.
pub const SYNTAX_ERROR: u16 = 502;
/// A method not allowed in the current state.
pub const COMMAND_INVALID: u16 = 503;
/// A channel that is not open, or already open.
pub const CHANNEL_ERROR: u16 = 504;
/// A frame of the wrong type in a content sequence.
pub const UNEXPECTED_FRAME: u16 = 505;
/// The server lacks a resource (too many channels).
pub const RESOURCE_ERROR: u16 = 506;
/// Something the server does not allow (a reserved name, say).
pub const NOT_ALLOWED: u16 = 530;
/// A class or method the server does not implement.
pub const NOT_IMPLEMENTED: u16 = 540;
/// The server failed internally.
pub const INTERNAL_ERROR: u16 = 541;

/// The spec's name of a reply code, for `reply-text`.
pub fn name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// Whether a code closes the whole connection rather than one channel.
pub fn is_connection_error(code: u16) -> bool {
    code >= 500 || code == CONNECTION_FORCED || code == INVALID_PATH
}

//! `handler auth-header`: turns a user name and password into the value of
//! the `AmqpAuthHeader` setting, so nobody pastes a password into a website
//! to base64-encode it.

use std::io::{BufRead, IsTerminal, Write};

use crate::broker::http::encode_credentials;
use crate::secret::Secret;

/// Why no header was printed. Never holds what was typed.
#[derive(Debug, thiserror::Error)]
pub enum AuthHeaderError {
    /// The user name line was empty or missing.
    #[error("no user name was given (first line: the user name, on CloudAMQP the \"User & Vhost\" value)")]
    NoUser,
    /// Basic auth cannot carry a colon in the user name.
    #[error("the user name contains a colon, which basic auth cannot carry")]
    UserHasColon,
    /// The password line was empty or missing.
    #[error("no password was given (second line: the password)")]
    NoPassword,
    /// Standard input or the terminal could not be read.
    #[error("could not read the input: {0}")]
    Read(#[from] std::io::Error),
}

/// Reads user and password, from the terminal (password hidden) or from two
/// piped lines, and prints the header value on stdout.
pub fn run() -> Result<(), AuthHeaderError> {
    let stdin = std::io::stdin();
    let header = if stdin.is_terminal() {
        eprint!("RabbitMQ user (on CloudAMQP: \"User & Vhost\"): ");
        std::io::stderr().flush()?;
        let mut user = String::new();
        stdin.lock().read_line(&mut user)?;
        let password = Secret::new(rpassword::prompt_password("Password (not shown): ")?);
        let header = encode(&user, &password)?;
        eprintln!("Put this in the AmqpAuthHeader app setting; it is as secret as the password:");
        header
    } else {
        from_lines(stdin.lock())?
    };
    println!("{}", header.expose());
    Ok(())
}

/// The header value from two lines: the user name, then the password.
pub fn from_lines(mut input: impl BufRead) -> Result<Secret, AuthHeaderError> {
    let mut user = String::new();
    input.read_line(&mut user)?;
    let mut password = String::new();
    input.read_line(&mut password)?;
    let password = Secret::new(password);
    encode(&user, &password)
}

/// Only the line ending is cut from the password: spaces may be part of it.
fn encode(user: &str, password: &Secret) -> Result<Secret, AuthHeaderError> {
    let user = user.trim();
    let password = password.expose().trim_end_matches(['\r', '\n']);
    if user.is_empty() {
        return Err(AuthHeaderError::NoUser);
    }
    if user.contains(':') {
        return Err(AuthHeaderError::UserHasColon);
    }
    if password.is_empty() {
        return Err(AuthHeaderError::NoPassword);
    }
    Ok(encode_credentials(user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(input: &str) -> Result<String, AuthHeaderError> {
        from_lines(input.as_bytes()).map(|s| s.expose().to_owned())
    }

    #[test]
    fn two_lines_give_the_base64_of_user_colon_password() {
        assert_eq!(header("guest\nguest\n").unwrap(), "Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(header("guest\r\nguest").unwrap(), "Z3Vlc3Q6Z3Vlc3Q=");
    }

    #[test]
    fn spaces_around_the_password_are_kept() {
        // base64("u: p ")
        assert_eq!(header("u\n p \n").unwrap(), "dTogcCA=");
    }

    #[test]
    fn missing_parts_are_named_without_echoing_input() {
        assert!(matches!(header(""), Err(AuthHeaderError::NoUser)));
        assert!(matches!(header("guest\n"), Err(AuthHeaderError::NoPassword)));
        let err = header("a:b\ns3cret\n").unwrap_err();
        assert!(matches!(err, AuthHeaderError::UserHasColon));
        assert!(!err.to_string().contains("s3cret"));
    }
}

//! A real SMTP server for tests: Debian's aiosmtpd on 127.0.0.1 writing to a Maildir, with an optional STARTTLS certificate made on the fly.

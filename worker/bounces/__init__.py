"""Bounce and complaint intake: what happens to a message after it left.

Reports arrive three ways and end as the same `Report` (events.py), recorded once each:

- provider webhooks: Amazon SES through SNS (sns.py, ses.py), Postmark (postmark.py), Mailgun
  (mailgun.py): each module verifies its provider's signature or secret and turns a post into
  reports; the web router (worker/web hooks) only passes bytes and headers in;
- returned mail (DSNs) read from an IMAP or POP3 mailbox or a Maildir (mailbox.py, dsn.py),
  matched by the VERP token in the address it came back to (verp.py), else by Message-ID.

Plain functions throughout; nothing here imports the web or the CLI.
"""

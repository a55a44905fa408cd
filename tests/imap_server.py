"""A small IMAP4rev1 server (RFC 3501) for the tests: one mailbox, plain LOGIN, and the commands
a client reading a bounce folder uses — CAPABILITY, LOGIN, SELECT, SEARCH, FETCH (BODY[] /
BODY.PEEK[]), STORE (+FLAGS), EXPUNGE, NOOP, LOGOUT."""

from __future__ import annotations

import re
import socketserver
import threading


class Mailbox:
    def __init__(self, user: str = "bounces", password: str = "secret"):
        self.user, self.password = user, password
        self.messages: list[tuple[bytes, set[str]]] = []
        self.lock = threading.Lock()
        self.logins = 0

    def add(self, raw: bytes) -> None:
        with self.lock:
            self.messages.append((raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), set()))


class _Session(socketserver.StreamRequestHandler):
    server: IMAPServer

    def send(self, line: bytes | str) -> None:
        self.wfile.write(line.encode() if isinstance(line, str) else line)

    def handle(self) -> None:
        box = self.server.mailbox
        self.send("* OK IMAP4rev1 test server ready\r\n")
        authed = False
        while True:
            line = self.rfile.readline()
            if not line:
                return
            tag, _, rest = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":  # not offered; answer plainly
                self.send(f"{tag} BAD UID not supported here\r\n")
            elif command == "CAPABILITY":
                self.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK CAPABILITY completed\r\n")
            elif command == "NOOP":
                self.send(f"{tag} OK NOOP completed\r\n")
            elif command == "LOGOUT":
                self.send(f"* BYE logging out\r\n{tag} OK LOGOUT completed\r\n")
                return
            elif command == "LOGIN":
                user, password = [a.strip('"') for a in args.split(" ", 1)]
                if (user, password) == (box.user, box.password):
                    authed = True
                    box.logins += 1
                    self.send(f"{tag} OK LOGIN completed\r\n")
                else:
                    self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            elif not authed:
                self.send(f"{tag} BAD log in first\r\n")
            elif command in ("SELECT", "EXAMINE"):
                with box.lock:
                    n = len(box.messages)
                self.send(
                    f"* {n} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n"
                    f"{tag} OK [READ-WRITE] SELECT completed\r\n"
                )
            elif command == "SEARCH":
                with box.lock:
                    found = [
                        str(i + 1)
                        for i, (_, flags) in enumerate(box.messages)
                        if "UNSEEN" not in args.upper() or "\\Seen" not in flags
                    ]
                self.send(
                    f"* SEARCH {' '.join(found)}\r\n{tag} OK SEARCH completed\r\n".replace("SEARCH \r", "SEARCH\r")
                )
            elif command == "FETCH":
                num = int(args.split(" ", 1)[0])
                with box.lock:
                    raw, flags = box.messages[num - 1]
                    if "PEEK" not in args.upper():
                        flags.add("\\Seen")
                self.send(f"* {num} FETCH (BODY[] {{{len(raw)}}}\r\n".encode() + raw + b")\r\n")
                self.send(f"{tag} OK FETCH completed\r\n")
            elif command == "STORE":
                num_text, _, what = args.partition(" ")
                new = set(re.findall(r"\\\w+", what))
                with box.lock:
                    box.messages[int(num_text) - 1][1].update(new)
                    flags = " ".join(sorted(box.messages[int(num_text) - 1][1]))
                self.send(f"* {num_text} FETCH (FLAGS ({flags}))\r\n{tag} OK STORE completed\r\n")
            elif command == "EXPUNGE":
                with box.lock:
                    gone = [i for i, (_, flags) in enumerate(box.messages) if "\\Deleted" in flags]
                    for i in reversed(gone):
                        del box.messages[i]
                        self.send(f"* {i + 1} EXPUNGE\r\n")
                self.send(f"{tag} OK EXPUNGE completed\r\n")
            else:
                self.send(f"{tag} BAD unknown command {command}\r\n")


class IMAPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mailbox: Mailbox):
        self.mailbox = mailbox
        super().__init__(("127.0.0.1", 0), _Session)
        self.port = self.server_address[1]

    def __enter__(self) -> IMAPServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _POP3Session(socketserver.StreamRequestHandler):
    """RFC 1939: USER, PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT (deletions on QUIT only)."""

    server: POP3Server

    def send(self, line: str | bytes) -> None:
        self.wfile.write(line.encode() if isinstance(line, str) else line)

    def handle(self) -> None:
        box = self.server.mailbox
        self.send("+OK POP3 test server ready\r\n")
        user, authed, deleted = None, False, set()
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command, _, arg = line.decode().rstrip("\r\n").partition(" ")
            command = command.upper()
            if command == "USER":
                user = arg
                self.send("+OK\r\n")
            elif command == "PASS":
                authed = (user, arg) == (box.user, box.password)
                self.send("+OK logged in\r\n" if authed else "-ERR [AUTH] invalid credentials\r\n")
            elif command == "QUIT":
                with box.lock:
                    box.messages = [m for i, m in enumerate(box.messages) if i + 1 not in deleted]
                self.send("+OK bye\r\n")
                return
            elif not authed:
                self.send("-ERR log in first\r\n")
            elif command == "STAT":
                with box.lock:
                    live = [m for i, m in enumerate(box.messages) if i + 1 not in deleted]
                self.send(f"+OK {len(live)} {sum(len(raw) for raw, _ in live)}\r\n")
            elif command == "RETR":
                raw = box.messages[int(arg) - 1][0]
                stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in raw.split(b"\r\n"))
                self.send(f"+OK {len(raw)} octets\r\n".encode() + stuffed.rstrip(b"\r\n") + b"\r\n.\r\n")
            elif command == "DELE":
                deleted.add(int(arg))
                self.send("+OK deleted\r\n")
            elif command in ("NOOP", "RSET"):
                if command == "RSET":
                    deleted.clear()
                self.send("+OK\r\n")
            else:
                self.send("-ERR unknown command\r\n")


class POP3Server(IMAPServer):
    def __init__(self, mailbox: Mailbox):
        self.mailbox = mailbox
        socketserver.ThreadingTCPServer.__init__(self, ("127.0.0.1", 0), _POP3Session)
        self.port = self.server_address[1]

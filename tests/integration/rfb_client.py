"""A small RFB 3.8 client written from RFC 6143 for the tests: an independent check of hyve's
VNC server (handshake with None or VNC authentication, Raw and DesktopSize decoding, the QEMU
extended key event and LED state pseudo-encodings) that keeps a connection open while a test
watches the guest."""
import socket
import struct
import time

# Imported here, not when the first password is needed: on the emulated test host the first
# import takes seconds, which a handshake cannot wait (the server closes it after 10 s).
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ENC_RAW, ENC_ZRLE, ENC_DESKTOP_SIZE, ENC_QEMU_EXT_KEY, ENC_QEMU_LED = 0, 16, -223, -258, -261
SEC_NONE, SEC_VNC, SEC_VENCRYPT = 1, 2, 19
VENCRYPT_X509_NONE, VENCRYPT_X509_VNC = 260, 261


class AuthFailed(Exception):
    pass


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"server closed the connection ({len(buf)}/{n} bytes)")
        buf += chunk
    return bytes(buf)


def vnc_auth_response(password, challenge):
    """DES-ECB of the challenge with the password (8 bytes, zero padded, each byte bit-mirrored)."""
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    enc = Cipher(algorithms.TripleDES(key), modes.ECB()).encryptor()
    return enc.update(challenge) + enc.finalize()


class RfbClient:
    def __init__(self, target, password=None, encodings=(ENC_RAW, ENC_DESKTOP_SIZE), timeout=60, tls=None):
        """target: (host, port) or a UNIX socket path. tls: an ssl.SSLContext for VeNCrypt X.509
        (X509Vnc with a password, X509None without), None for plain RFB."""
        if isinstance(target, str):
            self.sock = socket.socket(socket.AF_UNIX)
        else:
            self.sock = socket.socket()
        self.sock.settimeout(timeout)
        self.sock.connect(target)
        self.ext_key_acked = False
        self.leds = None
        self.updates = 0
        self.bytes_received = 0
        self._handshake(password, tls)
        self.set_pixel_format()
        self.set_encodings(encodings)

    def _recv(self, n):
        data = _recv_exact(self.sock, n)
        self.bytes_received += n
        return data

    def _handshake(self, password, tls):
        version = self._recv(12)
        assert version == b"RFB 003.008\n", version
        self.sock.sendall(b"RFB 003.008\n")
        n = self._recv(1)[0]
        if n == 0:
            reason = self._recv(struct.unpack(">I", self._recv(4))[0])
            raise AuthFailed(reason.decode())
        types = self._recv(n)
        if tls is not None:
            if SEC_VENCRYPT not in types:
                raise AuthFailed(f"server offers no VeNCrypt (types {list(types)})")
            self.sock.sendall(bytes([SEC_VENCRYPT]))
            self._vencrypt(tls, VENCRYPT_X509_NONE if password is None else VENCRYPT_X509_VNC)
            if password is not None:
                self.sock.sendall(vnc_auth_response(password, self._recv(16)))
        elif password is None:
            if SEC_NONE not in types:
                raise AuthFailed(f"server wants authentication (types {list(types)})")
            self.sock.sendall(bytes([SEC_NONE]))
        else:
            if SEC_VNC not in types:
                raise AuthFailed(f"server offers no VNC authentication (types {list(types)})")
            self.sock.sendall(bytes([SEC_VNC]))
            self.sock.sendall(vnc_auth_response(password, self._recv(16)))
        result = struct.unpack(">I", self._recv(4))[0]
        if result != 0:
            reason = self._recv(struct.unpack(">I", self._recv(4))[0])
            raise AuthFailed(reason.decode())
        self.sock.sendall(b"\x01")  # shared
        w, h = struct.unpack(">HH", self._recv(4))
        self._recv(16)  # the server's pixel format
        self.name = self._recv(struct.unpack(">I", self._recv(4))[0]).decode()
        self._resize(w, h)

    def _vencrypt(self, ctx, subtype):
        """VeNCrypt 0.2: agree on the version, choose subtype, then everything goes through TLS."""
        major, minor = self._recv(2)
        assert (major, minor) == (0, 2), (major, minor)
        self.sock.sendall(b"\x00\x02")
        if self._recv(1)[0] != 0:
            raise AuthFailed("server refused VeNCrypt 0.2")
        count = self._recv(1)[0]
        subtypes = struct.unpack(f">{count}I", self._recv(4 * count))
        if subtype not in subtypes:
            raise AuthFailed(f"server offers VeNCrypt subtypes {list(subtypes)}, not {subtype}")
        self.sock.sendall(struct.pack(">I", subtype))
        if self._recv(1)[0] != 1:
            raise AuthFailed(f"server did not accept VeNCrypt subtype {subtype}")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=None)
        self.tls_version = self.sock.version()

    def _resize(self, w, h):
        self.width, self.height = w, h
        self.pixels = bytearray(w * h * 4)

    def set_pixel_format(self):
        """32 bpp little endian, red at bits 16-23: bytes B, G, R, 0."""
        self.sock.sendall(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))

    def set_encodings(self, encodings):
        self.sock.sendall(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))

    def request(self, incremental=True):
        self.sock.sendall(struct.pack(">BBHHHH", 3, incremental, 0, 0, self.width, self.height))

    def read_update(self):
        """Reads one server message; returns the rectangles of a framebuffer update as
        (x, y, w, h, encoding), or None for another message."""
        kind = self._recv(1)[0]
        if kind == 2:  # bell
            return None
        if kind == 3:  # cut text
            self._recv(3)
            self._recv(struct.unpack(">I", self._recv(4))[0])
            return None
        assert kind == 0, f"unexpected server message {kind}"
        self._recv(1)
        rects = []
        for _ in range(struct.unpack(">H", self._recv(2))[0]):
            x, y, w, h, enc = struct.unpack(">HHHHi", self._recv(12))
            rects.append((x, y, w, h, enc))
            if enc == ENC_RAW:
                data = self._recv(w * h * 4)
                for row in range(h):
                    at = ((y + row) * self.width + x) * 4
                    self.pixels[at:at + w * 4] = data[row * w * 4:(row + 1) * w * 4]
            elif enc == ENC_ZRLE:  # not decoded: the benchmark only counts its bytes
                self._recv(struct.unpack(">I", self._recv(4))[0])
            elif enc == ENC_DESKTOP_SIZE:
                self._resize(w, h)
            elif enc == ENC_QEMU_EXT_KEY:
                self.ext_key_acked = True
            elif enc == ENC_QEMU_LED:
                self.leds = self._recv(1)[0]
            else:
                raise AssertionError(f"encoding {enc} was not asked for")
        self.updates += 1
        return rects

    def update(self, incremental=True):
        """Requests an update and reads messages until it arrives; returns its rectangles."""
        self.request(incremental)
        while True:
            rects = self.read_update()
            if rects is not None:
                return rects

    def pixel(self, x, y):
        b, g, r = self.pixels[(y * self.width + x) * 4:(y * self.width + x) * 4 + 3]
        return r, g, b

    def wait_until(self, ok, timeout=60):
        """Keeps requesting incremental updates until ok(self) holds."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while not ok(self):
            if time.monotonic() > deadline:
                raise AssertionError("the screen did not reach the expected state")
            self.update()
        return self

    def key(self, keysym, down):
        self.sock.sendall(struct.pack(">BBxxI", 4, down, keysym))

    def ext_key(self, qnum, keysym, down):
        self.sock.sendall(struct.pack(">BBHII", 255, 0, down, keysym, qnum))

    def pointer(self, x, y, buttons=0):
        self.sock.sendall(struct.pack(">BBHH", 5, buttons, x, y))

    def close(self):
        self.sock.close()


def connect_after_backoff(target, password, timeout=60):
    """After a wrong password the server refuses the address (every UNIX peer is one) until its
    back-off is over, and says so in the refusal: retry on that answer until the right password
    is let in. The wait follows the server's own message, not a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return RfbClient(target, password=password)
        except AuthFailed as e:
            assert "try again" in str(e) and time.monotonic() < deadline, e
            time.sleep(0.2)

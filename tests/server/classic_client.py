#!/usr/bin/python3
"""A client of the Anweddol classic TCP protocol, written from the protocol
(docs: /work/shared/spec/anweddol-protocol.md, "Classic TCP protocol"), for
the server's tests. Unlike the reference client it reads exactly (in loops)
and checks every acknowledgement.

Module use:
    with ClassicClient("127.0.0.1", 6150, timeout=10) as client:
        response = client.request({"verb": "STAT", "parameters": {}})

Command line:
    classic_client.py HOST PORT '{"verb":"STAT","parameters":{}}'
prints the server's JSON response on stdout; exits 1 with a message on
stderr when the exchange fails.

Needs Debian's python3-cryptography: run it with /usr/bin/python3.
"""

import hashlib
import json
import os
import socket
import sys

from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ACK_OK = b"1"
ACK_NOK = b"0"


class ProtocolError(Exception):
    """The server broke the protocol or refused a step."""


def oaep():
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    )


def aes_encrypt(key, iv, data):
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_decrypt(key, iv, data):
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def padded_length(length):
    text = str(length)
    if len(text) > 8:
        raise ValueError(f"a length of {length} does not fit the 8-byte field")
    return (text + "=" * (8 - len(text))).encode()


class ClassicClient:
    def __init__(self, host, port, timeout=10, key_size=4096, private_key=None):
        self.private_key = private_key or rsa.generate_private_key(
            public_exponent=65537, key_size=key_size
        )
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.server_public_pem = None
        self.key = None
        self.iv = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    # Exact I/O: the server may deliver a message in several segments.
    def recv_exactly(self, size):
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ProtocolError(
                    f"the server closed the connection after {len(data)} of {size} bytes"
                )
            data += chunk
        return data

    def expect_ack(self, step):
        ack = self.recv_exactly(1)
        if ack != ACK_OK:
            raise ProtocolError(f"the server refused {step} (answered {ack!r})")

    def server_fingerprint(self):
        """SHA-256 of the server's PEM, as the reference client shows it."""
        return hashlib.sha256(self.server_public_pem).hexdigest()

    def handshake(self):
        # 1-2: our public key, length first.
        pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sock.sendall(padded_length(len(pem)))
        self.expect_ack("our key's length")
        self.sock.sendall(pem)
        self.expect_ack("our key")
        # 3: the server's key.
        field = self.recv_exactly(8).decode("ascii")
        digits = field.rstrip("=")
        if not digits.isdigit() or not 0 < int(digits) <= 16384:
            self.sock.sendall(ACK_NOK)
            raise ProtocolError(f"bad server key length {field!r}")
        self.sock.sendall(ACK_OK)
        self.server_public_pem = self.recv_exactly(int(digits))
        server_key = serialization.load_pem_public_key(self.server_public_pem)
        self.sock.sendall(ACK_OK)
        # 4: our AES key and IV under the server's key.
        key, iv = os.urandom(32), os.urandom(16)
        self.sock.sendall(server_key.encrypt(key + iv, oaep()))
        self.expect_ack("our AES key")
        # 5: the server's AES key and IV under ours; adopt them.
        block = self.recv_exactly(self.private_key.key_size // 8)
        key_and_iv = self.private_key.decrypt(block, oaep())
        if len(key_and_iv) != 48:
            self.sock.sendall(ACK_NOK)
            raise ProtocolError(f"the server's AES key block holds {len(key_and_iv)} bytes")
        self.key, self.iv = key_and_iv[:32], key_and_iv[32:]
        self.sock.sendall(ACK_OK)

    def send_message(self, text):
        cipher = aes_encrypt(self.key, self.iv, text.encode())
        new_iv = os.urandom(16)
        self.sock.sendall(aes_encrypt(self.key, self.iv, str(len(cipher) + 16).encode()))
        self.expect_ack("the request's length")
        self.sock.sendall(cipher + new_iv)
        self.iv = new_iv

    def recv_message(self):
        length_text = aes_decrypt(self.key, self.iv, self.recv_exactly(16)).decode("ascii")
        if not length_text.isdigit() or not 32 <= int(length_text) <= 16 * 1024 * 1024:
            self.sock.sendall(ACK_NOK)
            raise ProtocolError(f"bad response length {length_text!r}")
        self.sock.sendall(ACK_OK)
        body = self.recv_exactly(int(length_text))
        text = aes_decrypt(self.key, self.iv, body[:-16])
        self.iv = body[-16:]
        return text.decode()

    def request(self, document):
        """Sends one request (a dict or JSON text) and returns the response as a dict."""
        if self.key is None:
            self.handshake()
        text = document if isinstance(document, str) else json.dumps(document)
        self.send_message(text)
        return json.loads(self.recv_message())


def main(argv):
    if len(argv) != 4:
        print(f"usage: {argv[0]} HOST PORT REQUEST_JSON", file=sys.stderr)
        return 2
    try:
        with ClassicClient(argv[1], int(argv[2])) as client:
            response = client.request(argv[3])
    except (OSError, ProtocolError, ValueError) as error:
        print(f"classic_client: {error}", file=sys.stderr)
        return 1
    print(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

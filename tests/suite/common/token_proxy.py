#!/usr/bin/env python3
"""A registry front that demands bearer tokens, as Docker Hub and most public registries do;
the test registry behind it has no auth of its own.

/token grants a token for the scopes asked (`?service=strata-test&scope=...`): pull scopes
to anyone, push scopes only with basic auth `user:pass`; wrong credentials get 401. Every
/v2/ request needs `Authorization: Bearer <token>` whose scopes cover it (GET/HEAD: pull,
else push), or it gets 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`.
Allowed requests are forwarded to the registry, Host header included, so the upload
locations it returns point back here, but as `localhost:PORT`: to the client a different
host, like a storage backend, which asks for no auth and must be sent none (a request that
carries some is logged as `CREDENTIALS SENT TO localhost`). Each request is logged as
`METHOD PATH STATUS`.

Usage: token_proxy.py LISTEN_PORT REGISTRY_PORT LOG_FILE
"""
import base64
import http.client
import http.server
import json
import re
import sys
import urllib.parse

LISTEN, UPSTREAM, LOG = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
SERVICE = "strata-test"
LOGIN = ("user", "pass")


def encode(scopes):
    return base64.urlsafe_b64encode(json.dumps(scopes).encode()).decode()


def decode(token):
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        return None


def covers(granted, repo, action):
    for scope in granted:
        m = re.fullmatch(r"repository:([^:]+):([a-z,*]+)", scope)
        if m and m.group(1) == repo and action in m.group(2).split(","):
            return True
    return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, status):
        with open(LOG, "a") as log:
            log.write(f"{self.command} {self.path} {status}\n")

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.record(status)

    def unauthorized(self, message, challenge=None):
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": message}]})
        headers = [("Content-Type", "application/json")]
        if challenge:
            headers.append(("WWW-Authenticate", challenge))
        self.reply(401, body.encode(), headers)

    def token(self, query):
        login = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            login = tuple(base64.b64decode(auth[6:]).decode().split(":", 1))
            if login != LOGIN:
                return self.unauthorized("wrong username or password")
        if query.get("service") != [SERVICE]:
            return self.reply(400)
        scopes = query.get("scope", [])
        pushing = any("push" in s.rsplit(":", 1)[-1].split(",") for s in scopes)
        if pushing and login is None:
            return self.unauthorized("push needs a login")
        body = json.dumps({"token": encode(scopes)}).encode()
        self.reply(200, body, [("Content-Type", "application/json")])

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if url.path == "/token":
            return self.token(urllib.parse.parse_qs(url.query))
        if self.headers.get("Host", "").startswith("localhost:"):
            if "Authorization" in self.headers:
                self.record("CREDENTIALS SENT TO localhost")
            return self.forward(body)
        challenge = f'Bearer realm="http://127.0.0.1:{LISTEN}/token",service="{SERVICE}"'
        auth = self.headers.get("Authorization", "")
        granted = decode(auth[7:]) if auth.startswith("Bearer ") else None
        m = re.match(r"/v2/(.+?)/(manifests|blobs|tags)/", url.path)
        if m:
            repo = m.group(1)
            action = "pull" if self.command in ("GET", "HEAD") else "push"
            actions = "pull" if action == "pull" else "pull,push"
            challenge += f',scope="repository:{repo}:{actions}"'
            if granted is None or not covers(granted, repo, action):
                return self.unauthorized("authentication required", challenge)
            # A cross-repository mount also reads the source repository.
            source = urllib.parse.parse_qs(url.query).get("from")
            if source and not covers(granted, source[0], "pull"):
                return self.unauthorized("no pull access to the source", challenge)
        elif granted is None:
            return self.unauthorized("authentication required", challenge)
        self.forward(body)

    def forward(self, body):
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() == "location":
                v = v.replace(f"//127.0.0.1:{LISTEN}/", f"//localhost:{LISTEN}/")
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.record(response.status)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()

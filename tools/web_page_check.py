#!/usr/bin/env python3
"""Opens the demo page (web/index.html, with web/pkg built by tools/web_build.sh) in headless
Chromium through chromedriver, waits until it has segmented the demo image, and checks what it
shows: the status lines (adapter, model load, segmentation time), one table row per segment, and
the same segment labels as the native CLI's result (web/tests/fixtures/demo.json). Writes a
screenshot with --screenshot. Python standard library only (WebDriver over HTTP).

    python3 -m http.server 8000 &          # from the repository root
    python3 tools/web_page_check.py --url http://localhost:8000/web/ [--screenshot page.png]
"""
import argparse, base64, json, os, shutil, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-webgpu",
         "--window-size=1000,1400"]


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["value"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--screenshot")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    driver = shutil.which("chromedriver")
    if not driver:
        sys.exit("chromedriver not found (apt-get install chromium chromium-driver)")
    port = free_port()
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        session = call(base, "POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"args": FLAGS}}}})["sessionId"]
        s = f"/session/{session}"
        call(base, "POST", s + "/url", {"url": args.url})
        js = lambda script: call(base, "POST", s + "/execute/sync", {"script": script, "args": []})
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            state = js("return [document.body.dataset.ready || '', "
                       "document.getElementById('status').className, "
                       "document.getElementById('status').textContent];")
            if state[0] == "1" or state[1] == "error":
                break
            time.sleep(1)
        status = state[2]
        print(status)
        if state[1] == "error" or state[0] != "1":
            sys.exit(f"the page did not finish: {status!r}")
        rows = js("return [...document.querySelectorAll('#segments tr')].slice(1)"
                  ".map(r => r.cells[1].textContent);")
        want = [s["label_name"] for s in json.load(open(os.path.join(ROOT, "web/tests/fixtures/demo.json")))["segments"]]
        print("segments shown:", ", ".join(rows))
        if rows != want:
            sys.exit(f"the page shows {rows}, the native CLI found {want}")
        size = js("const c = document.getElementById('canvas'); return [c.width, c.height];")
        if size != [384, 384]:
            sys.exit(f"the overlay canvas is {size}, expected the image's 384x384")
        if args.screenshot:
            png = call(base, "GET", s + "/screenshot")
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(png))
        call(base, "DELETE", s)
        print("page ok")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()

"""Downloads over http(s), for bundles and root images alike, in reusable pieces:

- `retry`: the retry policy (capped exponential backoff with full jitter, for as long as the
  deadline allows) and which failures another attempt can fix;
- `session`: a requests session (proxy, CA bundle) and the per-request timeouts;
- `ranged`: one GET, whole or from a byte offset (Range + If-Range), its status checked;
- `resume`: a file that survives a dropped connection (resumed where it stopped, hashed whole);
- `fetch`: a file and its `.minisig`, as the http and gist channels and root images need them.
"""

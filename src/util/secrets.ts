/**
 * What counts as a secret, in one place: key names whose values are never
 * shown (config errors, error `details`), and strings that look like
 * credentials wherever text leaves a worker (error messages in dead letters
 * and results). docs/security.md lists both.
 */

/** Key names whose values are secrets. */
const SECRET_KEY = /token|password|passwd|passphrase|secret|credential|api[_-]?key|authentication|authorization|cookie|private/i;

/** Whether a key (of a config block, of an error's details) holds a secret. */
export function isSecretKey(key: PropertyKey): boolean {
  return typeof key === 'string' && SECRET_KEY.test(key);
}

/** Text past this length is cut before it is searched (and sent): the patterns stay cheap on hostile input. */
const MAX_TEXT = 64 * 1024;

type Replacer = (match: string, ...groups: string[]) => string;

/** A quoted value keeps its quotes: `"[redacted]"`, so JSON stays JSON. */
const keepQuotes: Replacer = (_match, key, separator, value) =>
  `${key}${separator}${value!.startsWith('"') ? '"[redacted]"' : value!.startsWith("'") ? "'[redacted]'" : '[redacted]'}`;

// Every repeat is bounded, so a long run of look-alike characters costs linear time, not quadratic.
const SECRET_PATTERNS: ReadonlyArray<[RegExp, string | Replacer]> = [
  // Authorization header values.
  [/\b(Bearer|Basic|Token)(\s{1,8})[A-Za-z0-9._~+/=-]{8,4096}/gi, '$1$2[redacted]'],
  // JSON Web Tokens (header.payload.signature, base64url).
  [/\beyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{0,4096}/g, '[redacted jwt]'],
  // password=..., apiKey: ..., "token": "..."
  [
    /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|authorization)("?\s{0,8}[=:]\s{0,8})("[^"]{0,4096}"|'[^']{0,4096}'|[^\s&,;"']{1,4096})/gi,
    keepQuotes,
  ],
  // URL userinfo: scheme://user:password@host
  [/\b([a-z][a-z0-9+.-]{0,31}:\/\/)[^/\s:@]{1,256}(:[^/\s@]{0,256})?@/gi, '$1[redacted]@'],
];

/** `text` with what looks like a credential replaced by `[redacted]`; text past 64 KiB is cut first. */
export function redactSecrets(text: string): string {
  let out = text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}… (cut at ${MAX_TEXT} characters)` : text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement as Replacer);
  return out;
}

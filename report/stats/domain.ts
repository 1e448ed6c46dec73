/** scheme://[user@]host[:port]...; the host is what the source-domain figure counts. */
const URL_HOST = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]+)/i;

/**
 * The host of a URL, lower case and without a leading "www." (so www.example.com and example.com count as one
 * source); undefined when the text is not an absolute URL. A regex rather than `new URL()`: it runs per
 * written row, and the host is all the report needs.
 */
export function hostOf(url: string): string | undefined {
  const match = URL_HOST.exec(url.trim());
  if (match === null) return undefined;
  const host = match[1]!.toLowerCase().replace(/\.$/, '');
  const bare = host.startsWith('www.') ? host.slice(4) : host;
  return bare.length === 0 ? undefined : bare;
}

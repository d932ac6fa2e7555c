/**
 * Who the panel acts as: the identity `crowdsource register` saved for the user running
 * Jupyter, read through crowdsource's Jupyter Server extension (same origin as the page,
 * Jupyter's own auth), so nobody pastes a token. The settings are the fallback.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** What `GET <base_url>/crowdsource/identity` answers for a saved identity. */
export interface IIdentity {
  url: string;
  id: number | null;
  name: string | null;
  token: string;
}

/** The server, token and where they came from, for the panel to connect with. */
export interface IConnection {
  serverUrl: string;
  token: string;
  source: 'saved' | 'settings';
}

/** The saved identity (for `serverUrl` when given), or null: none saved, or no extension. */
export async function savedIdentity(
  serverUrl?: string
): Promise<IIdentity | null> {
  const settings = ServerConnection.makeSettings();
  const query = serverUrl ? URLExt.objectToQueryString({ url: serverUrl }) : '';
  const url = URLExt.join(settings.baseUrl, 'crowdsource', 'identity') + query;
  try {
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      // 404 when the server extension is not enabled: the settings apply.
      return null;
    }
    const body = await response.json();
    return body && body.identity ? (body.identity as IIdentity) : null;
  } catch {
    return null;
  }
}

/**
 * The saved identity first (for the server URL the user set, if they set one), else the
 * settings' URL and token.
 */
export async function resolveConnection(
  settingsUrl: string,
  settingsToken: string,
  userSetUrl: boolean
): Promise<IConnection> {
  const saved = await savedIdentity(userSetUrl ? settingsUrl : undefined);
  if (saved && saved.token) {
    return { serverUrl: saved.url, token: saved.token, source: 'saved' };
  }
  return { serverUrl: settingsUrl, token: settingsToken, source: 'settings' };
}

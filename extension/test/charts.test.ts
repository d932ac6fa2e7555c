import { describe, expect, it } from 'vitest';

import { IPlotly, offeredPlotly, offerPlotly } from '../src/charts';

const plotly = (): IPlotly => ({
  react: () => undefined,
  purge: () => undefined
});

describe('the plotly.js a face draws with', () => {
  it("is the one offered on the page (the JupyterLab extension's), else its own", async () => {
    const own = plotly();
    const offered = plotly();
    const load = offeredPlotly(() => Promise.resolve(own));
    expect(await load()).toBe(own);
    offerPlotly(() => Promise.resolve(offered));
    expect(await load()).toBe(offered);
  });
});

// The GFM plugin ships no types; these are the two plugins the converter uses.
declare module '@joplin/turndown-plugin-gfm' {
  import type TurndownService from 'turndown'
  export const strikethrough: TurndownService.Plugin
  export const taskListItems: TurndownService.Plugin
}

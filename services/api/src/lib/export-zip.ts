import yauzl from 'yauzl'

// The upload route's first look at a space export: a readable zip with an `index.html` at its
// root or one folder down, where Confluence puts it. The worker parses the rest when it syncs
// the source (and its job reports a clear error if the pages themselves cannot be read).

export class ExportZipError extends Error {
  override name = 'ExportZipError'
}

export async function checkExportZip(path: string): Promise<{ entries: number }> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false }, (err, file) =>
      err ? reject(err) : resolve(file),
    ),
  ).catch((err: Error) => {
    throw new ExportZipError(`The upload is not a readable zip (${err.message})`)
  })
  try {
    let entries = 0
    let index = false
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (entry: yauzl.Entry) => {
        entries++
        if (/^([^/]+\/)?index\.html$/.test(entry.fileName)) index = true
        zip.readEntry()
      })
      zip.on('end', resolve)
      zip.on('error', reject)
      zip.readEntry()
    }).catch((err: Error) => {
      throw new ExportZipError(`The upload is not a readable zip (${err.message})`)
    })
    if (!index) {
      throw new ExportZipError(
        'The zip is not a Confluence HTML space export: it has no index.html (export the space as HTML)',
      )
    }
    return { entries }
  } finally {
    zip.close()
  }
}

{
  "targets": [
    {
      "target_name": "fusedloss",
      "sources": [
        "<!@(node -p \"const fs=require('fs'), s=require('./native/sources.json'); s.core.concat(s.addon).flatMap((p) => { const [dir, ext] = p.split('/*'); return fs.readdirSync(dir).filter((f) => f.endsWith(ext)).sort().map((f) => dir + '/' + f); }).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "."
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fvisibility=hidden", "-ffp-contract=off"],
      "ldflags": ["-pthread"]
    }
  ]
}

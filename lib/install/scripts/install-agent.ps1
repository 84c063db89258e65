# Installs, upgrades, verifies or uninstalls the host security agent on Windows (cdk-agent-fleet).
#
# This file is the body of the aws:runPowerShellScript step of an AgentInstallDocument. At synth
# the construct puts a header of settings before it: $AgentAction, $AgentMode, $AgentTagKey and
# $AgentProxyUrl (document parameters SSM checked against allowedValues / allowedPattern), the
# service check timing, the lock and Windows Installer waits, and $AgentPackages, the pinned MSI
# packages by key (MSI_X86_64, MSI_ARM64), all validated at synth; then the S3 download functions.
#
# The last line of its output is one JSON object: action, outcome, version, imdsVersion, tag,
# activation (always none here), activationExitCode.
# Outcomes and exit statuses are those of install-agent.sh, plus reboot-required (exit 3010: SSM
# restarts the instance and runs this step again, which then checks the service).
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Adds TLS 1.2 for Windows PowerShell 5.1 on older .NET defaults, keeping whatever else is on (TLS 1.3).
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12

$Imds = 'http://169.254.169.254'
$Script:ImdsVersion = 'none'
$Script:ImdsToken = ''
$Script:TagState = 'unknown'
$Script:ProductName = ''
$Script:WorkDir = $null
$Script:StateDir = $null
$Script:RunLock = $null

function Write-Log([string] $Message) { [Console]::Error.WriteLine($Message) }

# Ends the run with the one JSON line; version is the agent's version installed at that moment.
function Finish([string] $Outcome, [int] $ExitCode) {
  if ($Script:WorkDir -and (Test-Path -LiteralPath $Script:WorkDir)) {
    Remove-Item -LiteralPath $Script:WorkDir -Recurse -Force -ErrorAction SilentlyContinue
  }
  $version = ''
  if ($Script:ProductName) {
    try { $product = Get-InstalledProduct $Script:ProductName; if ($product) { $version = $product.Version } } catch { Write-Log 'could not read the installed version' }
  }
  $result = [ordered]@{
    action = $AgentAction; outcome = $Outcome; version = $version
    imdsVersion = $Script:ImdsVersion; tag = $Script:TagState
    # The Windows step runs no activation (the construct refuses one with MSI packages).
    activation = 'none'; activationExitCode = ''
  }
  Write-Output ($result | ConvertTo-Json -Compress)
  if ($Script:RunLock) { $Script:RunLock.ReleaseMutex(); $Script:RunLock.Dispose() }
  exit $ExitCode
}

# One run at a time per agent: a named kernel mutex. Unlike a file it cannot be deleted (Uninstall
# removes the state directory), no child process inherits it, and Windows hands it to the next run
# (as abandoned) if this one dies.
function Enter-RunLock([string] $Service) {
  $name = 'Global\cdk-agent-fleet-' + ($Service -replace '[^A-Za-z0-9_.-]', '_')
  try { $mutex = [System.Threading.Mutex]::new($false, $name) }
  catch { Write-Log "could not open the run lock ${name}: $($_.Exception.Message)"; Finish 'busy' 14 }
  try {
    $acquired = $mutex.WaitOne([TimeSpan]::FromSeconds($AgentLockWaitSeconds))
  } catch {
    # PowerShell wraps what a .NET method throws: look inside.
    $abandoned = $_.Exception -is [System.Threading.AbandonedMutexException] -or $_.Exception.InnerException -is [System.Threading.AbandonedMutexException]
    if (-not $abandoned) { throw }
    Write-Log 'the previous run ended without releasing the run lock; taking it over'
    $acquired = $true
  }
  if (-not $acquired) {
    Write-Log "another run held the run lock for ${AgentLockWaitSeconds}s"
    $mutex.Dispose()
    Finish 'busy' 14
  }
  $Script:RunLock = $mutex
}

# The instance metadata service is never reached through a proxy. HttpWebRequest works the
# same in Windows PowerShell 5.1 (what SSM runs) and PowerShell 7.
function Invoke-Imds([string] $Path, [string] $Method = 'GET', [hashtable] $Headers = @{}) {
  $request = [System.Net.HttpWebRequest]::Create("$Imds$Path")
  $request.Method = $Method
  $request.Proxy = $null
  $request.Timeout = 5000
  foreach ($name in $Headers.Keys) { $request.Headers.Add($name, $Headers[$name]) }
  try {
    $response = $request.GetResponse()
    try {
      $reader = New-Object System.IO.StreamReader($response.GetResponseStream())
      return @{ Status = [int] $response.StatusCode; Body = $reader.ReadToEnd() }
    } finally { $response.Close() }
  } catch [System.Net.WebException] {
    if ($_.Exception.Response) { return @{ Status = [int] $_.Exception.Response.StatusCode; Body = '' } }
    return @{ Status = 0; Body = '' }
  } catch {
    $inner = $_.Exception.InnerException
    if ($inner -is [System.Net.WebException] -and $inner.Response) { return @{ Status = [int] $inner.Response.StatusCode; Body = '' } }
    return @{ Status = 0; Body = '' }
  }
}

# IMDSv2 first; IMDSv1 only when the token request fails and the instance still answers v1.
function Connect-Imds {
  $token = Invoke-Imds '/latest/api/token' 'PUT' @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
  if ($token.Status -eq 200 -and $token.Body) {
    $Script:ImdsToken = $token.Body
    $Script:ImdsVersion = 'v2'
    return $true
  }
  if ((Invoke-Imds '/latest/meta-data/instance-id').Status -eq 200) {
    $Script:ImdsVersion = 'v1'
    Write-Log 'IMDSv2 token request failed; used IMDSv1, which this instance still allows. Require IMDSv2 (HttpTokens=required).'
    return $true
  }
  return $false
}

function Get-ImdsPath([string] $Path) {
  $headers = @{}
  if ($Script:ImdsVersion -eq 'v2') { $headers['X-aws-ec2-metadata-token'] = $Script:ImdsToken }
  return Invoke-Imds $Path 'GET' $headers
}

# Sets TagState to absent, true, false or misconfigured; false when the tag cannot be read.
function Read-Tag {
  $response = Get-ImdsPath "/latest/meta-data/tags/instance/$AgentTagKey"
  switch ($response.Status) {
    200 {
      $value = $response.Body
      if ($value -ceq 'true' -or $value -ceq 'false') { $Script:TagState = $value }
      else {
        $Script:TagState = 'misconfigured'
        Write-Log "tag $AgentTagKey has the value '$value'; only true and false mean something"
      }
      return $true
    }
    404 {
      $Script:TagState = 'absent'
      if ((Get-ImdsPath '/latest/meta-data/tags/instance').Status -eq 404) {
        Write-Log 'no instance tags in the metadata service: either the instance has none, or metadata tags are off (InstanceMetadataTags=enabled), which hides exclusion tags'
      }
      return $true
    }
    default { return $false }
  }
}

# What the tag means for this run: proceed, excluded or not-targeted (DESIGN.md, "Tag semantics").
function Get-Decision {
  if ($AgentAction -eq 'Uninstall') { return 'proceed' }
  if ($AgentMode -eq 'ALL_INSTANCES') {
    if ($Script:TagState -eq 'false') { return 'excluded' }
    return 'proceed'
  }
  if ($Script:TagState -eq 'true') { return 'proceed' }
  return 'not-targeted'
}

function Get-Architecture {
  $arch = $env:PROCESSOR_ARCHITEW6432
  if (-not $arch) { $arch = $env:PROCESSOR_ARCHITECTURE }
  switch ($arch) {
    'AMD64' { return 'X86_64' }
    'ARM64' { return 'ARM64' }
    default { return $null }
  }
}

# The installed product (DisplayName = the package name) from the uninstall registry keys, as
# { Key, Version }: Version is '' when the product has no DisplayVersion.
function Get-InstalledProduct([string] $Name) {
  $roots = @(
    'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*',
    'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*'
  )
  foreach ($root in $roots) {
    $product = Get-ItemProperty -Path $root -ErrorAction SilentlyContinue |
      Where-Object { $_.PSObject.Properties['DisplayName'] -and $_.DisplayName -eq $Name } |
      Select-Object -First 1
    if ($product) {
      $version = $product.PSObject.Properties['DisplayVersion']
      return [pscustomobject]@{ Key = $product.PSChildName; Version = if ($version) { [string] $version.Value } else { '' } }
    }
  }
  return $null
}

# 1.2.3 matches 1.2.3 and 1.2.3.0, not 1.2.30.
function Test-VersionMatch([string] $Installed, [string] $Wanted) {
  return ($Installed -eq $Wanted) -or ($Installed -like "$Wanted.*") -or ($Installed -like "$Wanted-*")
}

# What msiexec's exit code means here (Windows Installer error codes).
function Get-MsiexecResult([int] $Code) {
  switch ($Code) {
    0 { return 'success' }
    3010 { return 'reboot-required' }  # ERROR_SUCCESS_REBOOT_REQUIRED: done, a restart completes it
    1641 { return 'reboot-initiated' } # ERROR_SUCCESS_REBOOT_INITIATED: done, the installer started a restart
    1618 { return 'busy' }             # ERROR_INSTALL_ALREADY_RUNNING: another installation holds Windows Installer
    default { return 'failed' }
  }
}

# Prints the end of an msiexec log and keeps a copy in the state directory: the work directory,
# where msiexec wrote it, is deleted when the run ends.
function Write-MsiexecLogTail([string] $LogFile) {
  if (-not (Test-Path -LiteralPath $LogFile)) { Write-Log 'msiexec wrote no log'; return }
  Write-Log "the last lines of the msiexec log:"
  # Get-Content honours the log's byte order mark (msiexec writes UTF-16).
  Get-Content -LiteralPath $LogFile -Tail 40 | ForEach-Object { Write-Log "  $_" }
  if ($Script:StateDir) {
    Copy-Item -LiteralPath $LogFile -Destination (Join-Path $Script:StateDir 'last-failed-msiexec.log') -Force -ErrorAction SilentlyContinue
  }
}

# Runs msiexec with a verbose log, waiting while another installation holds Windows Installer
# (1618), and returns the result word of Get-MsiexecResult.
function Invoke-Msiexec([string[]] $Arguments, [string] $Name) {
  $logFile = Join-Path $Script:WorkDir "msiexec-$Name.log"
  $deadline = (Get-Date).AddSeconds($AgentPackageManagerWaitSeconds)
  while ($true) {
    $process = Start-Process -FilePath (Join-Path $env:SystemRoot 'System32\msiexec.exe') -ArgumentList ($Arguments + @('/qn', '/norestart', '/l*v', "`"$logFile`"")) -Wait -PassThru -WindowStyle Hidden
    $result = Get-MsiexecResult $process.ExitCode
    if ($result -ne 'busy' -or (Get-Date) -ge $deadline) { break }
    Write-Log "another installation is in progress (msiexec 1618); trying again in ${AgentPackageManagerRetrySeconds}s"
    Start-Sleep -Seconds $AgentPackageManagerRetrySeconds
  }
  if ($result -eq 'busy') { Write-Log "Windows Installer stayed busy for ${AgentPackageManagerWaitSeconds}s" }
  if ($result -eq 'failed') {
    Write-Log "msiexec exited with $($process.ExitCode)"
    Write-MsiexecLogTail $logFile
  }
  if ($result -like 'reboot-*') { Write-Log "msiexec exited with $($process.ExitCode) ($result)" }
  return $result
}

function Install-Msi([string] $File) { return Invoke-Msiexec @('/i', "`"$File`"") 'install' }

# Reinstalls every file and registry entry of the pinned version (repair of a broken install).
function Repair-Msi([string] $File) { return Invoke-Msiexec @('/i', "`"$File`"", 'REINSTALL=ALL', 'REINSTALLMODE=vamus') 'repair' }

function Uninstall-Product($Product) { return Invoke-Msiexec @('/x', $Product.Key) 'uninstall' }

# The service must be running on two checks in a row: a crash right after start is a failure.
# With -Restart it is (re)started first; without, it is only watched.
function Test-ServiceUp([string] $Name, [switch] $Restart) {
  if ($Restart) {
    try { Set-Service -Name $Name -StartupType Automatic } catch { Write-Log "could not set $Name to start automatically" }
    try { Restart-Service -Name $Name -Force } catch { Write-Log "could not restart ${Name}: $($_.Exception.Message)" }
  }
  $running = 0
  for ($attempt = 1; $attempt -le $AgentServiceCheckAttempts; $attempt++) {
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($service -and $service.Status -eq 'Running') {
      $running++
      if ($running -ge 2) { return $true }
    } else { $running = 0 }
    Start-Sleep -Seconds $AgentServiceCheckIntervalSeconds
  }
  return $false
}

function Get-Package([hashtable] $Package, [string] $File) {
  $source = $Package.Source
  if ($source.StartsWith('s3://')) {
    Get-S3Object $source $Package.Region $File
  } elseif ($source.StartsWith('https://')) {
    $arguments = @{ Uri = $source; OutFile = $File; UseBasicParsing = $true; TimeoutSec = 900 }
    if ($AgentProxyUrl) { $arguments['Proxy'] = $AgentProxyUrl }
    Invoke-WebRequest @arguments
  } else {
    throw "unsupported package source $source"
  }
}

# An Authenticode publisher pin: the signature must be Valid (a chain Windows trusts, not
# revoked, the file unchanged since it was signed) and made by the pinned certificate
# (thumbprint) and/or subject. Ends the run signature-mismatch otherwise.
function Assert-Publisher([hashtable] $Package, [string] $File) {
  $signature = Get-AuthenticodeSignature -LiteralPath $File
  $signer = $signature.SignerCertificate
  $problem = $null
  if ($signature.Status -ne [System.Management.Automation.SignatureStatus]::Valid) {
    $problem = "its Authenticode signature is $($signature.Status): $($signature.StatusMessage)"
  } elseif ($null -eq $signer) {
    $problem = 'it has no signer certificate'
  } elseif ($Package.SignerThumbprint -and $signer.Thumbprint -ne $Package.SignerThumbprint) {
    $problem = "it is signed by certificate $($signer.Thumbprint), not the pinned $($Package.SignerThumbprint)"
  } elseif ($Package.SignerSubject -and $signer.Subject -cne $Package.SignerSubject) {
    $problem = "it is signed by '$($signer.Subject)', not the pinned '$($Package.SignerSubject)'"
  }
  if ($problem) {
    Write-Log "the package does not verify: $problem; nothing installed"
    Finish 'signature-mismatch' 16
  }
}

# Downloads the pinned package into the work directory and checks its SHA-256 and, when a
# publisher pins it, its Authenticode signature; ends the run when any check fails.
function Get-VerifiedPackage([hashtable] $Package) {
  $file = Join-Path $Script:WorkDir 'agent.msi'
  try { Get-Package $Package $file } catch { Write-Log "could not download the package: $($_.Exception.Message)"; Finish 'download-failed' 12 }
  $actual = (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash.ToLowerInvariant()
  if ($Package.Sha256 -and $actual -ne $Package.Sha256) {
    Write-Log "SHA-256 mismatch: expected $($Package.Sha256), got $actual; nothing installed"
    Finish 'hash-mismatch' 13
  }
  if ($Package.ContainsKey('SignerThumbprint')) { Assert-Publisher $Package $file }
  return $file
}

function Get-StatePath([string] $Name) { return Join-Path $Script:StateDir $Name }

# The last good package kept by an earlier run, if its recorded hash still matches: { File, Version }.
function Get-LastGood {
  $file = Get-StatePath 'last-good.msi'
  $versionFile = Get-StatePath 'last-good.version'
  $shaFile = Get-StatePath 'last-good.sha256'
  if (-not ((Test-Path -LiteralPath $file) -and (Test-Path -LiteralPath $versionFile) -and (Test-Path -LiteralPath $shaFile))) { return $null }
  $version = [System.IO.File]::ReadAllText($versionFile).Trim()
  if ((Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash.ToLowerInvariant() -ne [System.IO.File]::ReadAllText($shaFile).Trim()) {
    Write-Log "the kept copy of $version does not match its recorded SHA-256; not using it"
    return $null
  }
  return @{ File = $file; Version = $version }
}

function Save-LastGood([string] $File, [hashtable] $Package) {
  Copy-Item -LiteralPath $File -Destination (Get-StatePath 'last-good.msi.new') -Force
  Move-Item -LiteralPath (Get-StatePath 'last-good.msi.new') -Destination (Get-StatePath 'last-good.msi') -Force
  Set-Content -LiteralPath (Get-StatePath 'last-good.version') -Value $Package.Version -NoNewline
  # The hash of the verified file itself: a package pinned by its publisher has no pinned hash.
  $sha256 = (Get-FileHash -LiteralPath (Get-StatePath 'last-good.msi') -Algorithm SHA256).Hash.ToLowerInvariant()
  Set-Content -LiteralPath (Get-StatePath 'last-good.sha256') -Value $sha256 -NoNewline
}

# An install that has not been seen healthy yet: { version, previous, outcome }, kept across a
# restart (with the package in pending.msi) or an interrupted run.
function Get-Pending {
  $file = Get-StatePath 'pending.json'
  if (-not (Test-Path -LiteralPath $file)) { return $null }
  try { $pending = [System.IO.File]::ReadAllText($file) | ConvertFrom-Json } catch { return $null }
  foreach ($name in @('version', 'previous', 'outcome')) { if (-not $pending.PSObject.Properties[$name]) { return $null } }
  return $pending
}

function Set-Pending([hashtable] $Package, [string] $PreviousVersion, [string] $Outcome) {
  $pending = [ordered]@{ version = $Package.Version; previous = $PreviousVersion; outcome = $Outcome }
  Set-Content -LiteralPath (Get-StatePath 'pending.json') -Value ($pending | ConvertTo-Json -Compress) -NoNewline
}

function Remove-Pending {
  foreach ($name in @('pending.json', 'pending.msi')) { Remove-Item -LiteralPath (Get-StatePath $name) -Force -ErrorAction SilentlyContinue }
}

# Puts back what was there before: removes a fresh install, or reinstalls the kept last good
# version ($PreviousVersion: what was installed before the change, '' for nothing). Never returns.
function Invoke-Rollback([string] $Reason, [hashtable] $Package, [string] $PreviousVersion) {
  Write-Log "$Reason; rolling back"
  Remove-Pending
  if (-not $PreviousVersion) {
    $product = Get-InstalledProduct $Package.Name
    if ($product) {
      try { Stop-Service -Name $Package.Service -Force } catch { Write-Log "could not stop $($Package.Service)" }
      if ((Uninstall-Product $product) -in @('failed', 'busy')) {
        Write-Log "could not remove the failed install of $($Package.Name)"
        Finish 'rollback-failed' 21
      }
    }
    Finish 'rolled-back' 20
  }
  $kept = Get-LastGood
  if (-not $kept -or -not (Test-VersionMatch $PreviousVersion $kept.Version)) {
    Write-Log "no copy of the previous version ($PreviousVersion) was kept; left as it is, and the next Install tries again"
    Set-Pending $Package $PreviousVersion 'upgraded'
    Finish 'rollback-impossible' 22
  }
  $result = Install-Msi $kept.File
  if ($result -like 'reboot-*') { Write-Log "going back to $($kept.Version) completes with the next restart" }
  if ($result -notin @('failed', 'busy') -and (Test-ServiceUp $Package.Service -Restart)) {
    Write-Log "went back to $($kept.Version)"
    Finish 'rolled-back' 20
  }
  Finish 'rollback-failed' 21
}

# Installs the verified package over whatever is there; ends the run with its outcome.
function Install-Pinned([string] $File, [hashtable] $Package, [string] $PreviousVersion) {
  $outcome = if ($PreviousVersion) { 'upgraded' } else { 'installed' }
  Set-Pending $Package $PreviousVersion $outcome
  $result = Install-Msi $File
  if ($result -eq 'busy') { Remove-Pending; Finish 'package-manager-busy' 15 }
  if ($result -eq 'failed') { Invoke-Rollback "msiexec could not install $($Package.Version)" $Package $PreviousVersion }
  if ($result -like 'reboot-*') {
    # SSM restarts the instance on exit 3010 and runs this step again, which checks the service.
    Copy-Item -LiteralPath $File -Destination (Get-StatePath 'pending.msi') -Force
    Finish 'reboot-required' 3010
  }
  if (-not (Test-ServiceUp $Package.Service -Restart)) { Invoke-Rollback "service $($Package.Service) did not come up" $Package $PreviousVersion }
  Save-LastGood $File $Package
  Remove-Pending
  Finish $outcome 0
}

# The pinned version is installed: check the service, and repair it when it is not healthy
# (restart it, then reinstall the pinned version). Never returns.
function Repair-Agent([hashtable] $Package) {
  if (Test-ServiceUp $Package.Service) { Finish 'already-installed' 0 }
  Write-Log "service $($Package.Service) is not healthy; restarting it"
  if (Test-ServiceUp $Package.Service -Restart) { Finish 'repaired' 0 }
  Write-Log "service $($Package.Service) did not stay up after a restart; reinstalling $($Package.Version)"
  $file = Get-VerifiedPackage $Package
  $result = Repair-Msi $file
  if ($result -eq 'busy') { Finish 'package-manager-busy' 15 }
  if ($result -like 'reboot-*') { Finish 'reboot-required' 3010 }
  if ($result -eq 'success' -and (Test-ServiceUp $Package.Service -Restart)) {
    Save-LastGood $file $Package
    Finish 'repaired' 0
  }
  Write-Log "service $($Package.Service) is still not healthy after reinstalling $($Package.Version)"
  Finish 'repair-failed' 23
}

function Invoke-Install([hashtable] $Package, $Previous) {
  $previousVersion = if ($Previous) { $Previous.Version } else { '' }
  if ($Previous -and (Test-VersionMatch $Previous.Version $Package.Version)) {
    $pending = Get-Pending
    if (-not $pending) { Repair-Agent $Package }
    if ($pending.version -eq $Package.Version -and (Test-Path -LiteralPath (Get-StatePath 'pending.msi'))) {
      # The step again after the restart an install asked for (3010, 1641).
      if (Test-ServiceUp $Package.Service) {
        Save-LastGood (Get-StatePath 'pending.msi') $Package
        Remove-Pending
        Finish $pending.outcome 0
      }
      Invoke-Rollback "service $($Package.Service) did not come up after the restart" $Package $pending.previous
    }
    Write-Log "an earlier install of $($Package.Version) did not finish; installing it again"
    $previousVersion = $pending.previous
  }
  $file = Get-VerifiedPackage $Package
  Install-Pinned $file $Package $previousVersion
}

function New-PrivateDirectory([string] $Path) {
  $directory = New-Item -ItemType Directory -Path $Path -Force
  # Only SYSTEM and Administrators: the kept package is reinstalled as SYSTEM.
  $acl = New-Object System.Security.AccessControl.DirectorySecurity
  $acl.SetAccessRuleProtection($true, $false)
  foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
    $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
    $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, 'FullControl', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
    $acl.AddAccessRule($rule)
  }
  Set-Acl -LiteralPath $directory.FullName -AclObject $acl
  return $directory.FullName
}

function Main {
  $Script:WorkDir = New-PrivateDirectory (Join-Path ([System.IO.Path]::GetTempPath()) ("agent-fleet-" + [guid]::NewGuid()))

  if (-not (Connect-Imds)) {
    Write-Log 'the instance metadata service did not answer'
    if ($AgentAction -ne 'Uninstall') { Finish 'imds-unavailable' 10 }
  } elseif (-not (Read-Tag)) {
    Write-Log "could not read tag $AgentTagKey from the instance metadata service"
    if ($AgentAction -ne 'Uninstall') { Finish 'imds-unavailable' 10 }
  }

  switch (Get-Decision) {
    'excluded' { Write-Log "excluded by tag $AgentTagKey=false"; Finish 'excluded' 0 }
    'not-targeted' { Write-Log "not targeted: mode $AgentMode only manages instances tagged $AgentTagKey=true"; Finish 'not-targeted' 0 }
  }

  $architecture = Get-Architecture
  $key = "MSI_$architecture"
  if (-not $architecture -or -not $AgentPackages.ContainsKey($key)) {
    Write-Log "the document has no MSI package for this CPU architecture"
    Finish 'unsupported-platform' 11
  }
  $package = $AgentPackages[$key]
  $Script:ProductName = $package.Name
  Enter-RunLock $package.Service
  $Script:StateDir = New-PrivateDirectory (Join-Path (Join-Path $env:ProgramData 'cdk-agent-fleet') $package.Service)
  $previous = Get-InstalledProduct $package.Name

  switch ($AgentAction) {
    'Install' { Invoke-Install $package $previous }
    'Uninstall' {
      if (-not $previous) { Finish 'not-installed' 0 }
      try { Stop-Service -Name $package.Service -Force } catch { Write-Log "could not stop $($package.Service)" }
      $result = Uninstall-Product $previous
      if ($result -eq 'busy') { Finish 'package-manager-busy' 15 }
      if ($result -eq 'failed') { Finish 'failed' 1 }
      Remove-Item -LiteralPath $Script:StateDir -Recurse -Force -ErrorAction SilentlyContinue
      if ($result -like 'reboot-*') { Finish 'reboot-required' 3010 }
      Finish 'uninstalled' 0
    }
    'Verify' {
      if (-not $previous) { Finish 'not-installed' 32 }
      if (-not (Test-VersionMatch $previous.Version $package.Version)) {
        Write-Log "installed $($previous.Version), expected $($package.Version)"
        Finish 'wrong-version' 31
      }
      $service = Get-Service -Name $package.Service -ErrorAction SilentlyContinue
      if (-not $service -or $service.Status -ne 'Running') { Finish 'service-down' 30 }
      Finish 'compliant' 0
    }
    default { Finish 'invalid-action' 1 }
  }
}

try {
  Main
} catch {
  Write-Log "unexpected failure: $($_.Exception.Message)"
  Finish 'failed' 1
}
